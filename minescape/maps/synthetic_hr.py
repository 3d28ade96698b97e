"""A high-resolution synthetic land-cover scene in SinoLC-1 classes with low-resolution label products.

The scene (default 1 m pixels, EPSG:32650) holds tree cover and grassland over barren ground, a block of
cropland fields, a village of buildings, roads a few metres wide, a river and a pond. From the truth it
renders 4-band imagery (blue, green, red, near-infrared surface reflectance with field-to-field variation,
spatially correlated texture and pixel noise) and derives two low-resolution label products, as a
SinoLC-1-style workflow would find them:

* ``label_10m``: the majority (mode) class of each 10 x 10 block (10 m), as a 10 m land-cover product;
* ``label_30m``: the mode of each 30 x 30 block (30 m) with a share of cells relabelled at random (a noisier,
  coarser product that disagrees with the first one in places).

Everything is deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from scipy import ndimage

from minescape.errors import ConfigError
from minescape.geo.raster import Raster, write_raster
from minescape.legend import SINOLC1

ROAD, TREE, GRASS, CROP, BUILDING, BARREN, WATER = (SINOLC1.code_of(n) for n in (
    "Traffic route", "Tree cover", "Grassland", "Cropland", "Building", "Barren and sparse vegetation", "Water"))
CLASSES: tuple[int, ...] = (ROAD, TREE, GRASS, CROP, BUILDING, BARREN, WATER)
BANDS: tuple[str, ...] = ("blue", "green", "red", "nir")

# Mean surface reflectance per class (blue, green, red, NIR); typical values of each cover type.
SPECTRA: dict[int, tuple[float, float, float, float]] = {
    ROAD: (0.14, 0.15, 0.16, 0.20),
    TREE: (0.03, 0.06, 0.04, 0.34),
    GRASS: (0.05, 0.09, 0.07, 0.27),
    CROP: (0.06, 0.10, 0.09, 0.31),
    BUILDING: (0.22, 0.22, 0.24, 0.27),
    BARREN: (0.11, 0.14, 0.19, 0.26),
    WATER: (0.06, 0.07, 0.05, 0.03),
}


@dataclass(frozen=True)
class HRConfig:
    """Scene parameters: size in 1 m pixels (a multiple of 30), seeds and noise."""

    seed: int = 0
    width: int = 360
    height: int = 300
    res: float = 1.0
    crs: str = "EPSG:32650"
    origin: tuple[float, float] = (400000.0, 3500000.0)
    noise: float = 0.015  # std of per-pixel reflectance noise
    coarse_flip: float = 0.1  # share of 30 m cells relabelled at random in the second product

    def __post_init__(self) -> None:
        if self.width % 30 or self.height % 30 or self.width < 120 or self.height < 120:
            raise ConfigError(f"scene size must be multiples of 30 and >= 120 px (got {self.width} x {self.height})")
        if self.res != 1.0:
            raise ConfigError(f"the scene is drawn in 1 m pixels (got res={self.res})")


@dataclass(frozen=True)
class HRScene:
    """Imagery, truth and the two low-resolution label products (each a :class:`Raster` on its own grid)."""

    image: Raster  # (4, rows, cols) float32 reflectance, NaN nodata
    truth: Raster  # (1, rows, cols) uint8 SINOLC1 codes
    label_10m: Raster  # mode of 10 x 10 blocks
    label_30m: Raster  # mode of 30 x 30 blocks, with random relabelling


def _smooth(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return (field - field.mean()) / (field.std() + 1e-9)


def _line_mask(shape: tuple[int, int], p0: tuple[float, float], p1: tuple[float, float], width: float) -> np.ndarray:
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    (r0, c0), (r1, c1) = p0, p1
    dr, dc = r1 - r0, c1 - c0
    length = np.hypot(dr, dc)
    t = np.clip(((rows - r0) * dr + (cols - c0) * dc) / length**2, 0, 1)
    dist = np.hypot(rows - (r0 + t * dr), cols - (c0 + t * dc))
    return dist <= width / 2


def make_truth(cfg: HRConfig) -> np.ndarray:
    """The truth class map (uint8 SINOLC1 codes)."""
    rng = np.random.default_rng(cfg.seed)
    h, w = cfg.height, cfg.width
    veg = _smooth(rng, (h, w), sigma=w / 18)
    truth = np.full((h, w), BARREN, dtype=np.uint8)
    truth[veg > -0.4] = GRASS
    truth[veg > 0.5] = TREE
    # cropland block split into fields
    r0, c0 = int(h * 0.08), int(w * 0.52)
    r1, c1 = int(h * 0.48), int(w * 0.94)
    truth[r0:r1, c0:c1] = CROP
    # a pond and a meandering river
    rows, cols = np.mgrid[0:h, 0:w]
    pond = ((rows - h * 0.75) / (h * 0.09)) ** 2 + ((cols - w * 0.78) / (w * 0.11)) ** 2 < 1
    truth[pond] = WATER
    centre = w * 0.3 + w * 0.06 * np.sin(rows / h * 2 * np.pi * 1.5 + rng.uniform(0, 6))
    river = np.abs(cols - centre) < 5 + 3 * np.sin(rows / 23.0) ** 2
    truth[river] = WATER
    # a village: buildings in a lattice with gaps
    vr0, vc0, vr1, vc1 = int(h * 0.58), int(w * 0.40), int(h * 0.92), int(w * 0.62)
    for r in range(vr0, vr1, 22):
        for c in range(vc0, vc1, 20):
            if rng.random() < 0.8:
                bh, bw = rng.integers(8, 16), rng.integers(8, 15)
                truth[r:r + bh, c:c + bw] = BUILDING
    # roads (6 m and 4 m wide) across the scene and into the village
    roads = _line_mask((h, w), (0, w * 0.05), (h - 1, w * 0.48), 6)
    roads |= _line_mask((h, w), (h * 0.53, 0), (h * 0.53, w - 1), 6)
    roads |= _line_mask((h, w), (h * 0.53, w * 0.51), (h - 1, w * 0.51), 6)
    roads |= _line_mask((h, w), (r1 + 2, c0), (r1 + 2, c1), 4)
    truth[roads & ~river] = ROAD
    return truth


def render(truth: np.ndarray, cfg: HRConfig) -> np.ndarray:
    """Reflectance ``(4, rows, cols)`` float32 for a truth map."""
    rng = np.random.default_rng(cfg.seed + 1)
    h, w = truth.shape
    image = np.zeros((4, h, w), dtype=np.float32)
    texture = _smooth(rng, (h, w), sigma=4)
    for code, spectrum in SPECTRA.items():
        mask = truth == code
        for b in range(4):
            image[b][mask] = spectrum[b]
    # cropland fields: stripes of 24 px with their own crop stage (brightness in red/NIR)
    crop = truth == CROP
    field_id = (np.arange(w)[None, :] // 36) + 100 * (np.arange(h)[:, None] // 50)
    stage = rng.uniform(-1, 1, field_id.max() + 1)[field_id]
    image[2][crop] += 0.025 * stage[crop]
    image[3][crop] -= 0.04 * stage[crop]
    image *= (1 + 0.08 * texture)[None].astype(np.float32)
    image += rng.normal(0, cfg.noise, image.shape).astype(np.float32)
    return np.clip(image, 0.001, 1).astype(np.float32)


def mode_downsample(codes: np.ndarray, factor: int, classes: tuple[int, ...] = CLASSES) -> np.ndarray:
    """Majority class of each ``factor`` x ``factor`` block (ties go to the first class in ``classes``)."""
    h, w = codes.shape
    blocks = codes[: h - h % factor, : w - w % factor].reshape(h // factor, factor, w // factor, factor)
    counts = np.stack([(blocks == c).sum(axis=(1, 3)) for c in classes])
    return np.asarray(classes, dtype=codes.dtype)[counts.argmax(axis=0)]


def make_scene(cfg: HRConfig | None = None) -> HRScene:
    """Build the scene: imagery, truth, a 10 m mode product and a noisier 30 m product."""
    cfg = cfg or HRConfig()
    truth = make_truth(cfg)
    image = render(truth, cfg)
    crs = CRS.from_user_input(cfg.crs)
    x0, y0 = cfg.origin

    def transform(res: float) -> Affine:
        return Affine(res, 0, x0, 0, -res, y0)

    lr10 = mode_downsample(truth, 10)
    lr30 = mode_downsample(truth, 30)
    rng = np.random.default_rng(cfg.seed + 2)
    flip = rng.random(lr30.shape) < cfg.coarse_flip
    lr30[flip] = rng.choice(np.asarray(CLASSES, dtype=np.uint8), size=int(flip.sum()))
    nd = SINOLC1.nodata
    return HRScene(
        image=Raster(image, crs, transform(cfg.res), np.nan, BANDS),
        truth=Raster(truth[None], crs, transform(cfg.res), nd),
        label_10m=Raster(lr10[None], crs, transform(10.0), nd),
        label_30m=Raster(lr30[None], crs, transform(30.0), nd),
    )


def write_scene(scene: HRScene, out_dir: str | Path) -> dict[str, Path]:
    """Write ``image.tif``, ``truth.tif``, ``label_10m.tif`` and ``label_30m.tif`` (atomic GeoTIFFs)."""
    out = Path(out_dir)
    return {
        "image": write_raster(scene.image, out / "image.tif"),
        "truth": write_raster(scene.truth, out / "truth.tif", legend=SINOLC1),
        "label_10m": write_raster(scene.label_10m, out / "label_10m.tif", legend=SINOLC1),
        "label_30m": write_raster(scene.label_30m, out / "label_30m.tif", legend=SINOLC1),
    }
