"""The built-in synthetic mining region with known truth (demo, tests and benchmarks).

A rectangular region in a real UTM CRS (default EPSG:32750, UTM 50S, Pilbara-like) holds several
mining sites (polygons, one of them concave, one multipart). Inside each site the generator draws open
pits (some with pit lakes), waste dumps, tailings ponds, facilities, haul roads and other disturbed
land over a natural background of vegetation and bare soil. From that truth it renders:

* Sentinel-2 L2A-like scenes (10 bands at 10 m, DN with the baseline offset of their file name) for each
  DCM year, with per-class reflectance, spatially correlated and pixel noise, optional clouds;
* a DEM-change map (DCM): elevation change in metres (pits lose height, dumps gain it) with voids, and
  a per-pixel later-acquisition-year layer laid out in acquisition strips;
* a bi-temporal pair (T1 = 2017, T2 = 2024) whose T2 truth adds mine expansion, clearing,
  revegetation and new ponds, with the binary change truth.

Everything is deterministic for a given :class:`RegionConfig` (seeded ``numpy`` generators).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio.features
import shapely
from affine import Affine
from rasterio.crs import CRS
from scipy import ndimage

from minescape.atomic import atomic_write_text
from minescape.errors import ConfigError, MissingInputError
from minescape.geo.grid import Grid
from minescape.geo.raster import Raster, write_raster
from minescape.geo.vector import write_gpkg
from minescape.legend import CHANGE, MINING_LULC
from minescape.sentinel2 import TEN_BANDS, baseline_offset

PIT, DUMP, DISTURBED, WATER, FACILITY, BARE, VEG = (MINING_LULC.code_of(n) for n in MINING_LULC.names)

# Mean L2A surface reflectance per class, bands in TEN_BANDS order
# (B02, B03, B04, B05, B06, B07, B08, B8A, B11, B12); values typical of arid mining landscapes.
SPECTRA: dict[int, tuple[float, ...]] = {
    PIT: (0.11, 0.14, 0.18, 0.21, 0.23, 0.24, 0.25, 0.26, 0.31, 0.27),
    DUMP: (0.15, 0.19, 0.25, 0.28, 0.30, 0.31, 0.32, 0.33, 0.39, 0.35),
    DISTURBED: (0.16, 0.18, 0.21, 0.23, 0.24, 0.25, 0.26, 0.26, 0.30, 0.27),
    WATER: (0.07, 0.09, 0.07, 0.06, 0.045, 0.04, 0.035, 0.03, 0.02, 0.015),
    FACILITY: (0.28, 0.29, 0.30, 0.31, 0.31, 0.32, 0.32, 0.32, 0.36, 0.33),
    BARE: (0.09, 0.13, 0.19, 0.23, 0.25, 0.27, 0.28, 0.29, 0.37, 0.31),
    VEG: (0.035, 0.065, 0.045, 0.11, 0.24, 0.29, 0.32, 0.33, 0.18, 0.09),
}
CLOUD = (0.55, 0.54, 0.55, 0.56, 0.57, 0.57, 0.58, 0.58, 0.45, 0.35)
DCM_NODATA = -9999.0
YEAR_NODATA = 0
TILE = "50KQB"


@dataclass(frozen=True)
class RegionConfig:
    """Parameters of the synthetic region (sizes in pixels, ``res`` in metres)."""

    seed: int = 42
    width: int = 1000
    height: int = 800
    res: float = 10.0
    crs: str = "EPSG:32750"
    origin: tuple[float, float] = (600000.0, 7500000.0)  # top-left corner (x, y) in ``crs``
    n_sites: int = 6
    dcm_years: tuple[int, ...] = (2018, 2019, 2020)
    pair_years: tuple[int, int] = (2017, 2024)
    clouds: bool = True
    noise: float = 0.01  # std of per-pixel reflectance noise

    def __post_init__(self) -> None:
        if self.width < 64 or self.height < 64:
            raise ConfigError(f"the synthetic region needs at least 64 x 64 pixels (got {self.width} x {self.height})")
        if self.n_sites < 1:
            raise ConfigError(f"n_sites must be >= 1 (got {self.n_sites})")
        from minescape.limits import check_alloc

        # the region is built in memory: ~450 bytes per pixel at its peak (scenes, DCM, truth; measured)
        check_alloc(self.width * self.height * 450, f"a {self.width:,} x {self.height:,} px synthetic region")


@dataclass
class SyntheticScene:
    """One rendered scene: name (standard S2 product name), date, baseline, reflectance, cloud mask."""

    name: str
    date: dt.date
    baseline: str
    reflectance: np.ndarray  # (10, rows, cols) float32, NaN = nodata
    cloud: np.ndarray  # (rows, cols) bool

    @property
    def cloud_fraction(self) -> float:
        """Share of valid pixels under cloud."""
        valid = np.isfinite(self.reflectance[0])
        return float(self.cloud[valid].mean()) if valid.any() else 1.0


@dataclass
class Region:
    """The synthetic region in memory: truth, DCM, sites, scenes and the change pair."""

    config: RegionConfig
    grid: Grid
    truth: np.ndarray  # uint8 MINING_LULC codes, state of T1 and of the DCM years
    truth_t2: np.ndarray  # uint8 MINING_LULC codes at T2
    change: np.ndarray  # uint8 0/1 (CHANGE legend)
    dh: np.ndarray  # float32 metres, NaN = void
    dcm_year: np.ndarray  # uint16, 0 = void
    sites: gpd.GeoDataFrame  # site_id, name, geometry in ``grid.crs``
    scenes: list[SyntheticScene] = field(default_factory=list)
    t1: SyntheticScene | None = None
    t2: SyntheticScene | None = None
    veg_density: np.ndarray | None = None  # (rows, cols) bare-soil share of vegetation (re-rendering scenes)


@dataclass(frozen=True)
class RegionFiles:
    """Paths of a region written by :func:`write_region`."""

    root: Path
    sites: Path
    dcm_dh: Path
    dcm_year: Path
    scenes: tuple[Path, ...]
    t1: Path
    t2: Path
    truth_lulc: Path
    truth_lulc_t2: Path
    truth_change: Path
    manifest: Path
    dcm: Path | None = None  # DLR-layout DCM tile ZIPs (minescape.dcm.synthetic_tiles)

    @property
    def scene_dir(self) -> Path:
        """Folder holding every scene."""
        return self.root / "scenes"


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Spatially correlated noise, standardised to zero mean and unit std."""
    field_ = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=sigma, mode="reflect")
    return (field_ - field_.mean()) / (field_.std() + 1e-12)


def _blob(rng: np.random.Generator, cx: float, cy: float, radius: float, n: int = 16,
          irregularity: float = 0.25) -> shapely.Polygon:
    """An irregular star-shaped polygon around (cx, cy) in pixel coordinates."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = radius * (1 + irregularity * rng.uniform(-1, 1, n))
    return shapely.Polygon(np.c_[cx + radii * np.cos(angles), cy + radii * np.sin(angles)]).buffer(0)


def _ellipse(shape, cx, cy, rx, ry, angle) -> np.ndarray:
    """Normalised elliptic radius r (r < 1 inside) over the pixel grid."""
    rows, cols = np.indices(shape, dtype=np.float32)
    x, y = cols + 0.5 - cx, rows + 0.5 - cy
    ca, sa = np.cos(angle), np.sin(angle)
    u = (x * ca + y * sa) / rx
    v = (-x * sa + y * ca) / ry
    return np.sqrt(u * u + v * v)


def _burn(shape: tuple[int, int], geom) -> np.ndarray:
    """Rasterize a pixel-space geometry to a bool mask."""
    if geom.is_empty:
        return np.zeros(shape, dtype=bool)
    return rasterio.features.rasterize([(geom, 1)], out_shape=shape, fill=0, dtype="uint8",
                                       transform=Affine.identity()).astype(bool)


def _site_polygons(rng: np.random.Generator, cfg: RegionConfig) -> list:
    """Site outlines in pixel coordinates: on a jittered grid; #1 concave, #2 multipart."""
    n = cfg.n_sites
    nx = int(np.ceil(np.sqrt(n * cfg.width / cfg.height)))
    ny = int(np.ceil(n / nx))
    cw, ch = cfg.width / nx, cfg.height / ny
    polys = []
    for k in range(n):
        i, j = divmod(k, nx)
        cx = (j + 0.5) * cw + rng.uniform(-0.08, 0.08) * cw
        cy = (i + 0.5) * ch + rng.uniform(-0.08, 0.08) * ch
        radius = 0.36 * min(cw, ch)
        poly = _blob(rng, cx, cy, radius, n=18, irregularity=0.18)
        if k == 1:  # concave (crescent-like): its centroid may fall outside the polygon
            bite = shapely.Point(cx + 0.35 * radius, cy).buffer(0.8 * radius)
            poly = poly.difference(bite)
        if k == 2:  # multipart: a detached satellite pit area
            sat = _blob(rng, cx - 0.2 * radius, cy - 1.15 * radius, 0.22 * radius, n=10, irregularity=0.1)
            poly = shapely.union(poly.difference(sat.buffer(3)), sat) if sat.within(
                shapely.box(0, 0, cfg.width, cfg.height)) else poly
        poly = poly.intersection(shapely.box(2, 2, cfg.width - 2, cfg.height - 2))
        if poly.geom_type == "MultiPolygon" and k != 2:
            poly = max(poly.geoms, key=lambda g: g.area)
        polys.append(poly)
    return polys


def _draw_site(rng, truth, dh, site_mask, poly) -> None:
    """Paint pits, dumps, ponds, facilities, roads and disturbed land inside one site (in place)."""
    shape = truth.shape
    rows, cols = np.nonzero(site_mask)
    if rows.size == 0:
        return
    interior = ndimage.binary_erosion(site_mask, iterations=6)
    if not interior.any():
        interior = site_mask
    ir, ic = np.nonzero(interior)
    radius = np.sqrt(site_mask.sum() / np.pi)

    def pick():
        k = rng.integers(ir.size)
        return ic[k] + 0.5, ir[k] + 0.5

    anchors = []
    # disturbed land patches (cleared ground, stockpiles): minimal elevation change
    for _ in range(rng.integers(1, 3)):
        cx, cy = pick()
        m = _burn(shape, _blob(rng, cx, cy, radius * rng.uniform(0.15, 0.25))) & site_mask
        truth[m] = DISTURBED
        dh[m] += rng.normal(0.0, 0.4, m.sum())
    # waste dumps: elevation gain, flat-topped mounds
    for _ in range(rng.integers(1, 3)):
        cx, cy = pick()
        r = _ellipse(shape, cx, cy, radius * rng.uniform(0.18, 0.3), radius * rng.uniform(0.12, 0.22),
                     rng.uniform(0, np.pi))
        m = (r < 1) & site_mask
        height = rng.uniform(15, 40)
        truth[m] = DUMP
        dh[m] += height * np.clip(1.6 * (1 - r[m] ** 2), 0, 1)
        anchors.append((cx, cy))
    # open pits: elevation loss, bowl-shaped; some hold a pit lake
    for p in range(rng.integers(1, 3)):
        cx, cy = pick()
        rx, ry = radius * rng.uniform(0.2, 0.32), radius * rng.uniform(0.14, 0.24)
        r = _ellipse(shape, cx, cy, rx, ry, rng.uniform(0, np.pi))
        m = (r < 1) & site_mask
        depth = rng.uniform(30, 80)
        truth[m] = PIT
        dh[m] -= depth * (1 - r[m] ** 2)
        if p == 0 and rng.random() < 0.6:
            lake = (r < rng.uniform(0.25, 0.4)) & site_mask
            truth[lake] = WATER
        anchors.append((cx, cy))
    # tailings / sedimentation pond
    if rng.random() < 0.7:
        cx, cy = pick()
        w, h = radius * rng.uniform(0.08, 0.14), radius * rng.uniform(0.06, 0.1)
        m = _burn(shape, shapely.box(cx - w, cy - h, cx + w, cy + h)) & site_mask
        truth[m] = WATER
        dh[m] += rng.normal(0.5, 0.3, m.sum())
    # facilities: rectangular buildings and plant
    fac = []
    for _ in range(rng.integers(1, 4)):
        cx, cy = pick()
        w, h = rng.uniform(4, 9), rng.uniform(3, 7)
        geom = shapely.affinity.rotate(shapely.box(cx - w, cy - h, cx + w, cy + h), rng.uniform(0, 90))
        m = _burn(shape, geom) & site_mask
        fac.append((cx, cy, m))
    # haul roads (general disturbed land) link pits, dumps and the plant
    pts = anchors + [(cx, cy) for cx, cy, _ in fac]
    for a, b in zip(pts, pts[1:], strict=False):
        road = shapely.LineString([a, b]).buffer(1.6)
        m = _burn(shape, road) & site_mask & ~np.isin(truth, (PIT, WATER, DUMP))
        truth[m] = DISTURBED
    for _, _, m in fac:
        truth[m] = FACILITY


def _render(rng: np.random.Generator, truth: np.ndarray, veg_density: np.ndarray, *, gain: float,
            noise: float, cloud_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Reflectance (10, rows, cols) float32 for a class map, and the cloud mask."""
    shape = truth.shape
    spectra = np.zeros((256, len(TEN_BANDS)), dtype=np.float32)
    for code, values in SPECTRA.items():
        spectra[code] = values
    refl = spectra[truth].transpose(2, 0, 1).copy()  # (bands, rows, cols)
    veg = truth == VEG
    mix = np.asarray(SPECTRA[BARE], dtype=np.float32)[:, None] * 1.0
    refl[:, veg] = (1 - veg_density[veg]) * refl[:, veg] + veg_density[veg] * mix
    texture = 1 + 0.04 * _smooth_noise(rng, shape, 3.0)
    refl *= (gain * texture)[None]
    refl += rng.normal(0, noise, refl.shape).astype(np.float32)
    cloud = np.zeros(shape, dtype=bool)
    if cloud_fraction > 0:
        field_ = _smooth_noise(rng, shape, 18.0)
        thr = np.quantile(field_, 1 - cloud_fraction)
        alpha = np.clip((field_ - thr) / 0.4, 0, 1).astype(np.float32)
        cloud = alpha > 0.5
        refl = (1 - alpha) * refl + alpha * np.asarray(CLOUD, dtype=np.float32)[:, None, None]
    return np.clip(refl, 0.0001, 1.0).astype(np.float32), cloud


def _scene_name(date: dt.date, baseline: str, hhmmss: str = "022551") -> str:
    b = baseline.replace(".", "")
    return f"S2A_MSIL2A_{date:%Y%m%d}T{hhmmss}_N{b}_R046_T{TILE}_{date:%Y%m%d}T061234"


def _baseline_for(year: int) -> str:
    return "05.10" if year >= 2022 else "02.13"


def make_region(config: RegionConfig | None = None) -> Region:
    """Generate the synthetic region in memory (deterministic for ``config``)."""
    cfg = config or RegionConfig()
    rng = np.random.default_rng(cfg.seed)
    shape = (cfg.height, cfg.width)
    x0, y0 = cfg.origin
    transform = Affine(cfg.res, 0, x0, 0, -cfg.res, y0)
    grid = Grid(CRS.from_user_input(cfg.crs), transform, cfg.width, cfg.height)

    # natural background: vegetation and bare soil in smooth patches
    background = _smooth_noise(rng, shape, 25.0)
    truth = np.where(background > -0.2, VEG, BARE).astype(np.uint8)
    veg_density = np.clip(0.18 + 0.12 * _smooth_noise(rng, shape, 6.0), 0, 0.45).astype(np.float32)
    dh = (0.45 * _smooth_noise(rng, shape, 2.0) + rng.normal(0, 0.35, shape)).astype(np.float32)

    polys = _site_polygons(rng, cfg)
    for poly in polys:
        _draw_site(rng, truth, dh, _burn(shape, poly), poly)

    # DCM voids (radar shadow/layover) and acquisition strips for the later year
    voids = _smooth_noise(rng, shape, 4.0) > 2.6
    dh[voids] = np.nan
    strip = np.minimum((np.arange(cfg.width) * len(cfg.dcm_years)) // cfg.width, len(cfg.dcm_years) - 1)
    skew = (np.arange(cfg.height)[:, None] * 0.15).astype(int)
    strip_idx = np.clip((np.arange(cfg.width)[None, :] + skew) * len(cfg.dcm_years) // (cfg.width + skew.max() + 1),
                        0, len(cfg.dcm_years) - 1)
    del strip
    dcm_year = np.asarray(cfg.dcm_years, dtype=np.uint16)[strip_idx]
    dcm_year[voids] = YEAR_NODATA

    # T2 truth: mine expansion over vegetation, clearing, revegetation, new ponds
    truth_t2 = truth.copy()
    site_masks = [_burn(shape, p) for p in polys]
    for mask in site_masks:
        rr, cc = np.nonzero(ndimage.binary_dilation(mask, iterations=15))
        radius = np.sqrt(mask.sum() / np.pi)
        for cls in (DISTURBED, DUMP, PIT):
            k = rng.integers(rr.size)
            m = _burn(shape, _blob(rng, cc[k], rr[k], radius * rng.uniform(0.12, 0.2)))
            truth_t2[m & (truth == VEG)] = cls
        # revegetation of part of a dump or disturbed patch
        old = mask & np.isin(truth, (DUMP, DISTURBED))
        if old.any():
            orr, occ = np.nonzero(old)
            k = rng.integers(orr.size)
            m = _burn(shape, _blob(rng, occ[k], orr[k], radius * 0.12)) & old
            truth_t2[m] = VEG
    change = (truth_t2 != truth).astype(np.uint8)

    coords = [shapely.affinity.affine_transform(p, [cfg.res, 0, 0, -cfg.res, x0, y0]) for p in polys]
    sites = gpd.GeoDataFrame(
        {"site_id": [f"S{k + 1:02d}" for k in range(len(coords))],
         "name": [f"Synthetic mine {k + 1}" for k in range(len(coords))]},
        geometry=coords, crs=grid.crs,
    )

    region = Region(cfg, grid, truth, truth_t2, change, dh, dcm_year, sites, veg_density=veg_density)
    # one clear scene per DCM year, plus a cloudier one in the first year (clearest-scene choice)
    for i, year in enumerate(cfg.dcm_years):
        date = dt.date(year, 7, 15)
        refl, cloud = _render(rng, truth, veg_density, gain=1 + 0.02 * (i - 1), noise=cfg.noise,
                              cloud_fraction=0.03 if cfg.clouds else 0.0)
        region.scenes.append(SyntheticScene(_scene_name(date, _baseline_for(year)), date, _baseline_for(year),
                                            refl, cloud))
        if cfg.clouds and i == 0:
            date2 = dt.date(year, 3, 2)
            refl, cloud = _render(rng, truth, veg_density, gain=1.0, noise=cfg.noise, cloud_fraction=0.35)
            region.scenes.append(SyntheticScene(_scene_name(date2, _baseline_for(year), "023001"), date2,
                                                _baseline_for(year), refl, cloud))
    y1, y2 = cfg.pair_years
    refl1, cloud1 = _render(rng, truth, veg_density, gain=1.0, noise=cfg.noise, cloud_fraction=0.0)
    refl2, cloud2 = _render(rng, truth_t2, veg_density, gain=1.03, noise=cfg.noise, cloud_fraction=0.0)
    # T2 misses a corner triangle (swath edge): nodata
    rows, cols = np.indices(shape)
    edge = cols + rows < 0.08 * (cfg.width + cfg.height)
    refl2[:, edge] = np.nan
    region.t1 = SyntheticScene(_scene_name(dt.date(y1, 8, 10), _baseline_for(y1)), dt.date(y1, 8, 10),
                               _baseline_for(y1), refl1, cloud1)
    region.t2 = SyntheticScene(_scene_name(dt.date(y2, 8, 12), _baseline_for(y2)), dt.date(y2, 8, 12),
                               _baseline_for(y2), refl2, cloud2)
    return region


def reflectance_to_dn(refl: np.ndarray, baseline: str) -> np.ndarray:
    """Encode reflectance as Sentinel-2 uint16 DN for ``baseline`` (0 = nodata)."""
    offset = baseline_offset(baseline)
    dn = np.round(np.nan_to_num(refl, nan=0.0) * 10000.0 - offset)
    dn = np.clip(dn, 1, 65535).astype(np.uint16)
    dn[~np.isfinite(refl)] = 0
    return dn


def _write_scene(scene: SyntheticScene, grid: Grid, folder: Path) -> Path:
    dn = reflectance_to_dn(scene.reflectance, scene.baseline)
    path = folder / f"{scene.name}.tif"
    tags = {"DATE": scene.date.isoformat(), "PROCESSING_BASELINE": scene.baseline,
            "CLOUDY_PIXEL_PERCENTAGE": f"{100 * scene.cloud_fraction:.2f}", "PROCESSING_LEVEL": "Level-2A"}
    write_raster(Raster(dn, grid.crs, grid.transform, 0, TEN_BANDS), path, tags=tags)
    return path


def write_region(region: Region, out_dir: str | Path) -> RegionFiles:
    """Write the region as GeoTIFF/GPKG files under ``out_dir`` (each file written atomically).

    Layout: ``sites.gpkg``, ``dcm/`` (the DCM as DLR delivers it: tile ZIPs, LAST and FIRST, see
    :mod:`minescape.dcm.synthetic_tiles`), ``dcm_dh.tif`` (float32 m, nodata -9999) and ``dcm_year.tif`` (uint16,
    nodata 0) (the same DCM as two prepared rasters), ``scenes/*.tif`` (uint16 DN stacks named like S2 products),
    ``truth/lulc.tif``, ``truth/lulc_t2.tif``, ``truth/change.tif`` and ``region.json``.
    """
    root = Path(out_dir)
    grid = region.grid
    sites = write_gpkg(region.sites, root / "sites.gpkg", layer="sites")
    dh = np.where(np.isfinite(region.dh), region.dh, DCM_NODATA).astype(np.float32)
    dcm_dh = write_raster(Raster(dh, grid.crs, grid.transform, DCM_NODATA, ("dh",)), root / "dcm_dh.tif",
                          tags={"UNITS": "metre", "DESCRIPTION": "elevation change since the 2011-14 baseline"})
    dcm_year = write_raster(Raster(region.dcm_year, grid.crs, grid.transform, YEAR_NODATA, ("year",)),
                            root / "dcm_year.tif", tags={"DESCRIPTION": "later acquisition year"})
    from minescape.dcm.synthetic_tiles import write_region_tiles

    write_region_tiles(region, root / "dcm")
    scene_dir = root / "scenes"
    from minescape.progress import track

    scenes = tuple(_write_scene(s, grid, scene_dir) for s in track(region.scenes, "writing scenes"))
    t1 = _write_scene(region.t1, grid, scene_dir)
    t2 = _write_scene(region.t2, grid, scene_dir)
    truth_dir = root / "truth"
    lulc = write_raster(Raster(region.truth, grid.crs, grid.transform, MINING_LULC.nodata),
                        truth_dir / "lulc.tif", legend=MINING_LULC)
    lulc_t2 = write_raster(Raster(region.truth_t2, grid.crs, grid.transform, MINING_LULC.nodata),
                           truth_dir / "lulc_t2.tif", legend=MINING_LULC)
    change = region.change.copy()
    change[~np.isfinite(region.t2.reflectance[0])] = CHANGE.nodata
    chg = write_raster(Raster(change, grid.crs, grid.transform, CHANGE.nodata), truth_dir / "change.tif",
                       legend=CHANGE)
    manifest = root / "region.json"
    info = {
        "config": asdict(region.config),
        "crs": grid.crs.to_string(),
        "sites": "sites.gpkg",
        "dcm_dh": "dcm_dh.tif",
        "dcm_year": "dcm_year.tif",
        "dcm": "dcm",
        "scenes": [str(p.relative_to(root)) for p in scenes],
        "t1": str(t1.relative_to(root)),
        "t2": str(t2.relative_to(root)),
        "truth_lulc": "truth/lulc.tif",
        "truth_lulc_t2": "truth/lulc_t2.tif",
        "truth_change": "truth/change.tif",
    }
    atomic_write_text(manifest, json.dumps(info, indent=2))
    return RegionFiles(root, sites, dcm_dh, dcm_year, scenes, t1, t2, lulc, lulc_t2, chg, manifest, root / "dcm")


def load_region_files(root: str | Path) -> RegionFiles:
    """The :class:`RegionFiles` of a region previously written under ``root``."""
    root = Path(root)
    manifest = root / "region.json"
    if not manifest.exists():
        raise MissingInputError("no region.json: not a synthetic region folder", path=root)
    info = json.loads(manifest.read_text())
    return RegionFiles(
        root, root / info["sites"], root / info["dcm_dh"], root / info["dcm_year"],
        tuple(root / p for p in info["scenes"]), root / info["t1"], root / info["t2"],
        root / info["truth_lulc"], root / info["truth_lulc_t2"], root / info["truth_change"], manifest,
        root / info["dcm"] if "dcm" in info else None,
    )


def generate(out_dir: str | Path, config: RegionConfig | None = None) -> RegionFiles:
    """Make and write a region in one call."""
    return write_region(make_region(config), out_dir)
