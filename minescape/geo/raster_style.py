"""QGIS styles for rasters: a ``<name>.qml`` beside ``<name>.tif`` that QGIS applies when it opens it.

QGIS loads a QML file that sits beside a layer's file under the same name as that layer's default style (as it
does for GeoPackage ``layer_styles``, :mod:`minescape.geo.gpkg_style`). Three renderers:

* a float raster (a difference, a probability) has no colour table, so QGIS draws a grey min-max stretch over its
  outliers: :func:`ramp_qml` is a single-band pseudocolour renderer, an interpolated ramp through ``(value,
  colour)`` stops sampled from the matplotlib colour map the run report draws the same raster with, values outside
  clamped to the end colours;
* a class raster keeps GDAL's colour table but not its class names (GDAL stores those only in a PAM ``.aux.xml``):
  :func:`legend_qml` is a paletted renderer with the legend's colours and names;
* a Sentinel-2 stack: :func:`true_colour_qml` shows B04, B03, B02 as red, green, blue.

No library writes QGIS raster styles (QGIS's own Python bindings are not installable with pip), hence the few
lines of XML here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from minescape.atomic import atomic_write_text
from minescape.legend import Legend

#: matplotlib colour map of a signed difference: red (index loss: vegetation cleared, ground opened) through white
#: to blue (gain); the run report's overlays (:mod:`minescape.webreport.overlay`) draw with the same
DIVERGING_CMAP = "RdBu"
#: matplotlib colour map of a magnitude or a probability (dark purple low, yellow high), as the report's
SEQUENTIAL_CMAP = "viridis"
#: share of valid pixels (in %) whose absolute value a difference's ramp spans; the rest take its end colours
DISPLAY_PERCENTILE = 98.0
#: colour stops written per ramp (QGIS interpolates between them)
STOPS = 9


@dataclass(frozen=True)
class ColourRamp:
    """An interpolated colour ramp: ``stops`` are ``(value, "#rrggbb")`` in increasing value (raster units),
    ``title`` says what the values are (shown as the ramp's label in QGIS's layer panel)."""

    stops: tuple[tuple[float, str], ...]
    title: str

    def __post_init__(self) -> None:
        values = [v for v, _ in self.stops]
        if len(values) < 2 or any(b <= a for a, b in zip(values, values[1:])):
            raise ValueError(f"ramp stops must be at least two increasing values (got {values})")


def _spread(lo: float, hi: float, cmap: str) -> tuple[tuple[float, str], ...]:
    """:data:`STOPS` evenly spaced values from ``lo`` to ``hi`` with the colours of the matplotlib map ``cmap``."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    colours = colormaps[cmap](np.linspace(0.0, 1.0, STOPS))
    return tuple((float(lo + (hi - lo) * i / (STOPS - 1)), to_hex(c)) for i, c in enumerate(colours))


def diverging_ramp(limit: float, title: str) -> ColourRamp:
    """A red-white-blue ramp from ``-limit`` through 0 to ``+limit`` (a signed difference; ``limit`` is rounded to
    two significant digits, so the legend reads 0.27, not 0.271729)."""
    limit = float(f"{limit:.2g}") if limit > 0 else 1.0
    return ColourRamp(_spread(-limit, limit, DIVERGING_CMAP), title)


def sequential_ramp(low: float, high: float, title: str) -> ColourRamp:
    """A sequential ramp (viridis) from ``low`` to ``high`` (a magnitude or a probability; ``high`` rounded to two
    significant digits)."""
    high = float(f"{high:.2g}") if high > low else float(low) + 1.0
    return ColourRamp(_spread(float(low), high, SEQUENTIAL_CMAP), title)


def _pipe_qml(renderer: str) -> str:
    """A QGIS raster style document around one ``<rasterrenderer>`` element."""
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.28.0" styleCategories="Symbology">\n'
        f"<pipe>\n{renderer}</pipe>\n"
        "</qgis>\n"
    )


def ramp_qml(ramp: ColourRamp, *, band: int = 1) -> str:
    """QGIS QML: a single-band pseudocolour renderer of ``band`` with the ramp (interpolated, clamped)."""
    lo, hi = ramp.stops[0][0], ramp.stops[-1][0]
    items = "".join(f'<item alpha="255" value="{v:.6g}" label="{v:.6g}" color="{c}"/>' for v, c in ramp.stops)
    return _pipe_qml(
        f'<rasterrenderer type="singlebandpseudocolor" band="{int(band)}" opacity="1" alphaBand="-1" '
        f'classificationMin="{lo:.6g}" classificationMax="{hi:.6g}" classificationMinMaxOrigin="User">\n'
        "<rasterTransparency/>\n"
        f"<rastershader><colorrampshader colorRampType=\"INTERPOLATED\" classificationMode=\"1\" clip=\"0\" "
        f'minimumValue="{lo:.6g}" maximumValue="{hi:.6g}" labelPrecision="3">{items}</colorrampshader>'
        "</rastershader>\n"
        f"<!-- {_comment(ramp.title)} -->\n"
        "</rasterrenderer>\n"
    )


def legend_qml(legend: Legend) -> str:
    """QGIS QML: a paletted renderer with the legend's colours and class names, so QGIS's layer panel lists
    "Open pit", "Change" ... instead of the codes (GDAL keeps a GeoTIFF's colour table but class names only in a
    PAM ``.aux.xml``, which minescape does not write). Nodata stays transparent (the file's nodata value)."""
    entries = "".join(f'<paletteEntry value="{c.code}" color="{c.hex}" alpha="255" label={quoteattr(c.name)}/>'
                      for c in legend.classes)
    return _pipe_qml(
        '<rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1">\n'
        f"<rasterTransparency/>\n<colorPalette>{entries}</colorPalette>\n"
        f"<!-- {_comment(legend.name)} legend -->\n"
        "</rasterrenderer>\n"
    )


def write_legend_style(raster_path: str | Path, legend: Legend) -> Path:
    """Write ``<raster>.qml`` (:func:`legend_qml`) atomically beside a class raster."""
    return atomic_write_text(style_path(raster_path), legend_qml(legend))


#: the Sentinel-2 bands QGIS shows as red, green, blue in true colour
TRUE_COLOUR = ("B04", "B03", "B02")
#: the top of the true-colour stretch in DN (reflectance x 10,000): 0.3 reflectance, bright ground not clipped
TRUE_COLOUR_DN_MAX = 3000


def true_colour_qml(band_names: Sequence[str], *, dn_max: float = TRUE_COLOUR_DN_MAX) -> str | None:
    """QGIS QML: a multiband renderer showing B04, B03, B02 of a stack as red, green, blue, each stretched from 0
    to ``dn_max``; None when the stack lacks one of them. (QGIS's own default shows bands 1, 2, 3, which for
    a stack ordered B02, B03, B04 puts blue in red.)"""
    names = [str(b).upper() for b in band_names]
    if not all(b in names for b in TRUE_COLOUR):
        return None
    red, green, blue = (names.index(b) + 1 for b in TRUE_COLOUR)
    stretch = "".join(
        f"<{colour}ContrastEnhancement><minValue>0</minValue><maxValue>{dn_max:g}</maxValue>"
        f"<algorithm>StretchToMinimumMaximum</algorithm></{colour}ContrastEnhancement>"
        for colour in ("red", "green", "blue")
    )
    return _pipe_qml(
        f'<rasterrenderer type="multibandcolor" redBand="{red}" greenBand="{green}" blueBand="{blue}" '
        'opacity="1" alphaBand="-1">\n'
        f"<rasterTransparency/>\n{stretch}\n"
        "</rasterrenderer>\n"
    )


def write_true_colour_style(raster_path: str | Path, band_names: Sequence[str]) -> Path | None:
    """Write ``<raster>.qml`` (:func:`true_colour_qml`) atomically; None, and no file (an old one removed), for a
    stack without the three visible bands."""
    text = true_colour_qml(band_names)
    if text is None:
        style_path(raster_path).unlink(missing_ok=True)
        return None
    return atomic_write_text(style_path(raster_path), text)


def _comment(text: str) -> str:
    return text.replace("--", "- -")


def style_path(raster_path: str | Path) -> Path:
    """Where QGIS looks for a raster's default style: the same name with ``.qml``."""
    return Path(raster_path).with_suffix(".qml")


def write_ramp_style(raster_path: str | Path, ramp: ColourRamp) -> Path:
    """Write ``<raster>.qml`` atomically (same ramp, same bytes) and return its path."""
    return atomic_write_text(style_path(raster_path), ramp_qml(ramp))

