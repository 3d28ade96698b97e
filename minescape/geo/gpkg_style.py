"""A default QGIS style stored in a GeoPackage (the ``layer_styles`` table QGIS reads).

QGIS looks for a ``layer_styles`` table in a GeoPackage and applies the row whose ``f_table_name`` is
the layer and ``useAsDefault`` is true when the layer is opened. The style is a categorized renderer on one
attribute, one colour per value (QML for QGIS, SLD for other clients): the release shards by ``class_name``
with the legend's colours (filled), the change candidates an analyst edits by ``direction`` (outlines only,
so the imagery under them stays visible).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from minescape.legend import Legend

#: ``layer_styles.update_time`` and ``gpkg_contents.last_change``: fixed, so the bytes depend on the content only
#: (:data:`minescape.geo.vector.GPKG_FIXED_DATE` is this date)
FIXED_DATE = "2000-01-01T00:00:00.000Z"

_LAYER_STYLES_DDL = """
CREATE TABLE IF NOT EXISTS layer_styles (
  id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
  f_table_catalog TEXT(256), f_table_schema TEXT(256), f_table_name TEXT(256),
  f_geometry_column TEXT(256), styleName TEXT(30), styleQML TEXT, styleSLD TEXT,
  useAsDefault BOOLEAN, description TEXT, owner TEXT(30), ui TEXT(30), update_time DATETIME
)"""


@dataclass(frozen=True)
class Category:
    """One value of the styled attribute, its legend label and its colour ``(r, g, b)``."""

    value: str
    label: str
    color: tuple[int, int, int]

    @property
    def hex(self) -> str:
        """The colour as ``#rrggbb``."""
        return "#{:02x}{:02x}{:02x}".format(*self.color)


@dataclass(frozen=True)
class LayerStyle:
    """A categorized polygon style: ``attribute``'s values coloured by ``categories``; ``outline_only`` draws
    each polygon's outline (``outline_mm`` wide) without a fill; ``description`` is the row's description."""

    attribute: str
    categories: tuple[Category, ...]
    description: str
    outline_only: bool = False
    outline_mm: float = 0.6

    @classmethod
    def from_legend(cls, legend: Legend) -> LayerStyle:
        """Filled polygons by ``class_name`` in the legend's colours (the release shards)."""
        return cls("class_name", tuple(Category(c.name, c.name, tuple(c.color[:3])) for c in legend.classes),
                   f"{legend.name} classes by class_name")


def _rgb(color) -> str:
    return "{},{},{},255".format(*color)


def qml(style: LayerStyle) -> str:
    """QGIS QML: a categorized renderer on ``style.attribute``, one symbol per category."""
    cats, syms = [], []
    for i, c in enumerate(style.categories):
        cats.append(f'<category render="true" symbol="{i}" value={quoteattr(c.value)} label={quoteattr(c.label)}/>')
        fill = "no" if style.outline_only else "solid"
        outline = (f'<Option type="QString" name="outline_style" value="solid"/>'
                   f'<Option type="QString" name="outline_width" value="{style.outline_mm:g}"/>'
                   f'<Option type="QString" name="outline_width_unit" value="MM"/>') if style.outline_only else \
            '<Option type="QString" name="outline_style" value="no"/>'
        syms.append(
            f'<symbol type="fill" name="{i}" alpha="1" clip_to_extent="1" force_rhr="0">'
            f'<layer class="SimpleFill" enabled="1" locked="0" pass="0">'
            f'<Option type="Map">'
            f'<Option type="QString" name="color" value="{_rgb(c.color)}"/>'
            f'<Option type="QString" name="outline_color" value="{_rgb(c.color)}"/>'
            f"{outline}"
            f'<Option type="QString" name="style" value="{fill}"/>'
            f"</Option></layer></symbol>"
        )
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.28.0" styleCategories="Symbology">\n'
        f'<renderer-v2 type="categorizedSymbol" attr={quoteattr(style.attribute)} symbollevels="0" '
        'enableorderby="0" forceraster="0">\n'
        f"<categories>{''.join(cats)}</categories>\n"
        f"<symbols>{''.join(syms)}</symbols>\n"
        "</renderer-v2>\n</qgis>\n"
    )


def sld(style: LayerStyle, layer: str) -> str:
    """OGC SLD 1.1 with one rule per category (``style.attribute`` equals its value)."""
    rules = []
    for c in style.categories:
        paint = (f'<se:Stroke><se:SvgParameter name="stroke">{c.hex}</se:SvgParameter></se:Stroke>'
                 if style.outline_only else
                 f'<se:Fill><se:SvgParameter name="fill">{c.hex}</se:SvgParameter></se:Fill>')
        rules.append(
            f"<se:Rule><se:Name>{_esc(c.label)}</se:Name>"
            f"<ogc:Filter><ogc:PropertyIsEqualTo><ogc:PropertyName>{_esc(style.attribute)}</ogc:PropertyName>"
            f"<ogc:Literal>{_esc(c.value)}</ogc:Literal></ogc:PropertyIsEqualTo></ogc:Filter>"
            f"<se:PolygonSymbolizer>{paint}</se:PolygonSymbolizer></se:Rule>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<StyledLayerDescriptor xmlns="http://www.opengis.net/sld" xmlns:ogc="http://www.opengis.net/ogc" '
        'xmlns:se="http://www.opengis.net/se" version="1.1.0">'
        f"<NamedLayer><se:Name>{_esc(layer)}</se:Name><UserStyle><se:Name>{_esc(layer)}</se:Name>"
        f"<se:FeatureTypeStyle>{''.join(rules)}</se:FeatureTypeStyle></UserStyle></NamedLayer>"
        "</StyledLayerDescriptor>\n"
    )


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def add_layer_style(gpkg: str | Path, layer: str, style: LayerStyle) -> None:
    """Add ``style`` as the default style row for ``layer`` to ``gpkg`` (table created if missing).

    The table is also registered in ``gpkg_contents`` as an attributes table (as QGIS does), with a
    fixed ``last_change`` so the file bytes depend only on the content.
    """
    con = sqlite3.connect(gpkg)
    try:
        with con:
            con.execute(_LAYER_STYLES_DDL)
            con.execute(
                "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, f_geometry_column, "
                "styleName, styleQML, styleSLD, useAsDefault, description, owner, ui, update_time) "
                "VALUES ('', '', ?, 'geom', ?, ?, ?, 1, ?, '', NULL, ?)",
                (layer, style.attribute, qml(style), sld(style, layer), style.description, FIXED_DATE),
            )
            con.execute(
                "INSERT OR REPLACE INTO gpkg_contents (table_name, data_type, identifier, description, "
                "last_change) VALUES ('layer_styles', 'attributes', 'layer_styles', '', ?)",
                (FIXED_DATE,),
            )
    finally:
        con.close()


def read_default_style(gpkg: str | Path, layer: str) -> str | None:
    """The default QML stored for ``layer`` in ``gpkg``, or None."""
    con = sqlite3.connect(f"file:{gpkg}?mode=ro", uri=True)
    try:
        row = con.execute(
            "SELECT styleQML FROM layer_styles WHERE f_table_name = ? AND useAsDefault ORDER BY id LIMIT 1",
            (layer,),
        ).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        con.close()
    return row[0] if row else None
