"""Legends as data: class codes, names, colours and definitions for rasters and vectors.

A :class:`Legend` serves raster outputs (integer codes, a GDAL colour table, the nodata value)
and vector outputs (class names) from one definition. Three legends ship with minescape:
``MINING_LULC`` (7 mining land use/land cover classes), ``SINOLC1`` (the 11 SinoLC-1 classes),
``CHANGE`` (binary change) and, for real-data validation, ``WORLDCOVER`` (ESA WorldCover v1/v2).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minescape.errors import InputError

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class LegendClass:
    """One class: its integer ``code`` in rasters, its ``name`` in vectors, an RGB colour."""

    code: int
    name: str
    color: RGB
    definition: str = ""

    @property
    def hex(self) -> str:
        """Colour as ``#rrggbb``."""
        return "#{:02x}{:02x}{:02x}".format(*self.color)


def _finite_values(values: Iterable[float]) -> set:
    """The finite values among ``values``, whole ones as ``int`` (NaN and infinities are no class value)."""
    return {int(v) if float(v).is_integer() else float(v) for v in values if np.isfinite(v)}


@dataclass(frozen=True)
class Legend:
    """An ordered set of classes with a raster nodata code (never a class code)."""

    name: str
    classes: tuple[LegendClass, ...]
    nodata: int
    _by_code: dict[int, LegendClass] = field(init=False, repr=False, compare=False)
    _by_name: dict[str, LegendClass] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        codes = [c.code for c in self.classes]
        names = [c.name for c in self.classes]
        if len(set(codes)) != len(codes) or len(set(names)) != len(names):
            raise ValueError(f"legend {self.name!r}: class codes and names must be unique")
        if self.nodata in codes:
            raise ValueError(f"legend {self.name!r}: nodata {self.nodata} is also a class code")
        object.__setattr__(self, "_by_code", {c.code: c for c in self.classes})
        object.__setattr__(self, "_by_name", {c.name: c for c in self.classes})

    @property
    def codes(self) -> list[int]:
        """Class codes in legend order."""
        return [c.code for c in self.classes]

    @property
    def names(self) -> list[str]:
        """Class names in legend order."""
        return [c.name for c in self.classes]

    def __len__(self) -> int:
        return len(self.classes)

    def __iter__(self):
        return iter(self.classes)

    def by_code(self, code: int) -> LegendClass:
        """The class with integer ``code``; InputError listing the valid codes otherwise."""
        try:
            return self._by_code[int(code)]
        except KeyError:
            raise InputError(f"code {code} is not in the {self.name} legend (codes: {self.codes})") from None

    def by_name(self, name: str) -> LegendClass:
        """The class named ``name``; InputError listing the valid names otherwise."""
        try:
            return self._by_name[name]
        except KeyError:
            raise InputError(f"class {name!r} is not in the {self.name} legend ({', '.join(self.names)})") from None

    def code_of(self, name: str) -> int:
        """Integer code of the class named ``name``."""
        return self.by_name(name).code

    def name_of(self, code: int) -> str:
        """Name of the class with integer ``code``."""
        return self.by_code(code).name

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """GDAL colour table for ``rasterio``'s ``write_colormap`` (nodata transparent)."""
        cmap = {c.code: (*c.color, 255) for c in self.classes}
        if 0 <= self.nodata <= 255:
            cmap[self.nodata] = (0, 0, 0, 0)
        return cmap

    def lookup_names(self, codes: np.ndarray) -> np.ndarray:
        """Vectorised code -> name (object array); unknown codes raise InputError."""
        codes = np.asarray(codes)
        out = np.empty(codes.shape, dtype=object)
        for value in np.unique(codes):
            out[codes == value] = self.name_of(int(value))
        return out

    def check_codes(self, array: np.ndarray, *, source: str = "array", allow_nodata: bool = True) -> None:
        """Raise InputError if ``array`` holds values that are neither class codes nor nodata."""
        allowed = set(self.codes) | ({self.nodata} if allow_nodata else set())
        found = set(np.unique(np.asarray(array)).tolist())
        if found - allowed:
            raise self.unknown_values(found, allowed=allowed, path=source)

    def with_legend_nodata(self, data: np.ndarray, nodata: float | None) -> np.ndarray:
        """``data`` (a class raster of another file) with its own nodata pixels, ``nodata`` and NaN where ``data``
        is float, set to this legend's nodata, in ``data``'s dtype: what :meth:`check_codes` and a cast to the
        legend's codes should see (a product whose nodata is 255, a float label whose nodata is NaN)."""
        data = np.asarray(data)
        missing = ~np.isfinite(data) if data.dtype.kind == "f" else np.zeros(data.shape, dtype=bool)
        if nodata is not None and not np.isnan(nodata):
            missing |= data == nodata
        return np.where(missing, self.nodata, data).astype(data.dtype, copy=False)

    def unknown_values(self, found: Iterable[int], *, allowed: Iterable[int] | None = None,
                       path: str | Path | None = None) -> InputError:
        """The one-line error for a map holding ``found`` values of which some are not ``allowed`` (default: the
        codes and nodata), naming the built-in legends that hold every found value (a map read with the wrong
        ``--legend``)."""
        allowed = set(self.codes) | {self.nodata} if allowed is None else set(allowed)
        found = _finite_values(found)
        bad = sorted(found - allowed)
        return InputError(f"values {bad[:10]} are not in the {self.name} legend (expected {sorted(allowed)})"
                          f"{self.other_legend_hint(found)}", path=path)

    def other_legend_hint(self, found: Iterable[int]) -> str:
        """``"; every value is a class of the worldcover legend (--legend worldcover)"`` when the built-in legends
        other than this one that hold every ``found`` value (nodata aside) exist, else ``""``."""
        found = _finite_values(found) - {self.nodata}
        fits = [lg.name for lg in LEGENDS.values()
                if lg.name != self.name and found <= set(lg.codes) | {lg.nodata}]
        return f"; every value is a class of the {' and the '.join(fits)} legend (--legend {fits[0]})" if fits else ""

    def matplotlib_cmap(self):
        """A ``(ListedColormap, BoundaryNorm)`` pair that draws codes in legend colours."""
        from matplotlib.colors import BoundaryNorm, ListedColormap

        codes = sorted(self.codes)
        colors = [np.array(self.by_code(c).color) / 255 for c in codes]
        bounds = [codes[0] - 0.5] + [(a + b) / 2 for a, b in zip(codes, codes[1:], strict=False)] + [codes[-1] + 0.5]
        return ListedColormap(colors), BoundaryNorm(bounds, len(colors))

    def to_dict(self) -> dict:
        """JSON-ready description (stored in model files and raster metadata)."""
        return {
            "name": self.name,
            "nodata": self.nodata,
            "classes": [
                {"code": c.code, "name": c.name, "color": list(c.color), "definition": c.definition}
                for c in self.classes
            ],
        }

    def to_json(self) -> str:
        """Compact JSON of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict) -> Legend:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=data["name"],
            nodata=int(data["nodata"]),
            classes=tuple(
                LegendClass(int(c["code"]), c["name"], tuple(c["color"]), c.get("definition", ""))
                for c in data["classes"]
            ),
        )

    def raster_tags(self) -> dict[str, str]:
        """GeoTIFF metadata tags: the legend JSON and ``CLASS_<code>=<name>`` per class."""
        tags = {"LEGEND": self.to_json(), "LEGEND_NAME": self.name}
        tags.update({f"CLASS_{c.code}": c.name for c in self.classes})
        return tags

    def to_clr(self) -> str:
        """A QGIS/GDAL colour-map text file (``value R G B A label`` per line) for Paletted rendering."""
        return "".join(f"{c.code} {c.color[0]} {c.color[1]} {c.color[2]} 255 {c.name}\n" for c in self.classes)

    def category_names(self) -> list[str]:
        """GDAL category names indexed by code (0..max code), blank where no class."""
        names = [""] * (max(self.codes) + 1)
        for c in self.classes:
            names[c.code] = c.name
        return names


# Mining LULC: the 7 classes of the global mining land use/land cover dataset. Definitions follow
# the published class descriptions; the elevation cues refer to the TanDEM-X DEM-change map (DCM).
MINING_LULC = Legend(
    name="mining_lulc",
    nodata=0,
    classes=(
        LegendClass(1, "Open pit", (200, 30, 45),
                    "Excavation where ore or overburden is removed: a depression, marked by elevation loss "
                    "in the DEM-change map."),
        LegendClass(2, "Waste dumping site", (150, 90, 40),
                    "Area where overburden, waste rock or tailings are deposited: a mound or terrace, marked by "
                    "elevation gain in the DEM-change map."),
        LegendClass(3, "General disturbed land", (245, 160, 90),
                    "Land cleared or disturbed by mining (haul roads, stockpiles, cleared ground) with minimal "
                    "elevation change and little vegetation."),
        LegendClass(4, "Water body", (40, 110, 220),
                    "Pit lakes, tailings and sedimentation ponds and other surface water, identified by a "
                    "water index."),
        LegendClass(5, "Facility", (130, 40, 160),
                    "Buildings and infrastructure of the mine (processing plants, offices, workshops, tanks), "
                    "identified by a built-up index."),
        LegendClass(6, "Bare soil", (225, 205, 150),
                    "Natural or undisturbed bare ground and sparse cover inside the mining area."),
        LegendClass(7, "Vegetation", (40, 150, 60),
                    "Natural or restored vegetation (trees, shrubs, grass, crops), identified by NDVI."),
    ),
)

# SinoLC-1 (Li et al. 2023): 11 classes; code 11 is unused in the published legend.
SINOLC1 = Legend(
    name="sinolc1",
    nodata=0,
    classes=(
        LegendClass(1, "Traffic route", (255, 0, 0)),
        LegendClass(2, "Tree cover", (0, 100, 0)),
        LegendClass(3, "Shrubland", (255, 190, 35)),
        LegendClass(4, "Grassland", (233, 255, 190)),
        LegendClass(5, "Cropland", (255, 235, 175)),
        LegendClass(6, "Building", (255, 170, 0)),
        LegendClass(7, "Barren and sparse vegetation", (180, 180, 180)),
        LegendClass(8, "Snow and ice", (240, 240, 240)),
        LegendClass(9, "Water", (0, 100, 200)),
        LegendClass(10, "Wetland", (0, 150, 160)),
        LegendClass(12, "Moss and lichen", (250, 230, 160)),
    ),
)

# Binary change masks (CHANGE-MINING2025 encoding): 0 no change, 1 change, 255 nodata.
CHANGE = Legend(
    name="change",
    nodata=255,
    classes=(
        LegendClass(0, "No change", (0, 0, 0), "No land-cover change between the two dates."),
        LegendClass(1, "Change", (255, 255, 255), "Land-cover change between the two dates."),
    ),
)

# ESA WorldCover 10 m v100 (2020) / v200 (2021) legend, with its published colours.
WORLDCOVER = Legend(
    name="worldcover",
    nodata=0,
    classes=(
        LegendClass(10, "Tree cover", (0, 100, 0)),
        LegendClass(20, "Shrubland", (255, 187, 34)),
        LegendClass(30, "Grassland", (255, 255, 76)),
        LegendClass(40, "Cropland", (240, 150, 255)),
        LegendClass(50, "Built-up", (250, 0, 0)),
        LegendClass(60, "Bare / sparse vegetation", (180, 180, 180)),
        LegendClass(70, "Snow and ice", (240, 240, 240)),
        LegendClass(80, "Permanent water bodies", (0, 100, 200)),
        LegendClass(90, "Herbaceous wetland", (0, 150, 160)),
        LegendClass(95, "Mangroves", (0, 207, 117)),
        LegendClass(100, "Moss and lichen", (250, 230, 160)),
    ),
)

# A change mask scored against its reference, pixel by pixel (``change evaluate --errors``).
CHANGE_ERRORS = Legend(
    name="change_errors",
    nodata=255,
    classes=(
        LegendClass(0, "No change, agreed", (235, 235, 235), "Neither the mask nor the reference has change."),
        LegendClass(1, "Change found", (26, 150, 65), "Change in the mask and the reference (true positive)."),
        LegendClass(2, "False alarm", (215, 25, 28), "Change in the mask only (false positive)."),
        LegendClass(3, "Missed change", (43, 131, 186), "Change in the reference only (false negative)."),
    ),
)

LEGENDS: dict[str, Legend] = {lg.name: lg for lg in (MINING_LULC, SINOLC1, CHANGE, WORLDCOVER, CHANGE_ERRORS)}


def get_legend(name: str) -> Legend:
    """A built-in legend by name (``mining_lulc``, ``sinolc1``, ``change``, ``worldcover``, ``change_errors``)."""
    try:
        return LEGENDS[name]
    except KeyError:
        raise InputError(f"unknown legend {name!r}; choose one of: {', '.join(LEGENDS)}") from None
