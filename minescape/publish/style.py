"""A default QGIS style stored in each GeoPackage (the ``layer_styles`` table QGIS reads).

QGIS looks for a ``layer_styles`` table in a GeoPackage and applies the row whose ``f_table_name`` is
the layer and ``useAsDefault`` is true when the layer is opened. The style is a categorized renderer on
``class_name`` with the legend's colours (QML for QGIS, SLD for other clients).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from xml.sax.saxutils import quoteattr

from minescape.geo.vector import GPKG_FIXED_DATE
from minescape.legend import Legend

STYLE_NAME = "class_name"

_LAYER_STYLES_DDL = """
CREATE TABLE IF NOT EXISTS layer_styles (
  id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
  f_table_catalog TEXT(256), f_table_schema TEXT(256), f_table_name TEXT(256),
  f_geometry_column TEXT(256), styleName TEXT(30), styleQML TEXT, styleSLD TEXT,
  useAsDefault BOOLEAN, description TEXT, owner TEXT(30), ui TEXT(30), update_time DATETIME
)"""


def _rgb(color) -> str:
    return "{},{},{},255".format(*color)


def qml(legend: Legend) -> str:
    """QGIS QML: a categorized renderer on ``class_name``, one symbol per legend class."""
    cats, syms = [], []
    for i, c in enumerate(legend.classes):
        cats.append(f'<category render="true" symbol="{i}" value={quoteattr(c.name)} label={quoteattr(c.name)}/>')
        syms.append(
            f'<symbol type="fill" name="{i}" alpha="1" clip_to_extent="1" force_rhr="0">'
            f'<layer class="SimpleFill" enabled="1" locked="0" pass="0">'
            f'<Option type="Map">'
            f'<Option type="QString" name="color" value="{_rgb(c.color)}"/>'
            f'<Option type="QString" name="outline_color" value="{_rgb(c.color)}"/>'
            f'<Option type="QString" name="outline_style" value="no"/>'
            f'<Option type="QString" name="style" value="solid"/>'
            f"</Option></layer></symbol>"
        )
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.28.0" styleCategories="Symbology">\n'
        '<renderer-v2 type="categorizedSymbol" attr="class_name" symbollevels="0" enableorderby="0" '
        'forceraster="0">\n'
        f"<categories>{''.join(cats)}</categories>\n"
        f"<symbols>{''.join(syms)}</symbols>\n"
        "</renderer-v2>\n</qgis>\n"
    )


def sld(legend: Legend, layer: str) -> str:
    """OGC SLD 1.1 with one rule per class (``class_name`` equals the class name)."""
    rules = []
    for c in legend.classes:
        rules.append(
            f"<se:Rule><se:Name>{_esc(c.name)}</se:Name>"
            f"<ogc:Filter><ogc:PropertyIsEqualTo><ogc:PropertyName>class_name</ogc:PropertyName>"
            f"<ogc:Literal>{_esc(c.name)}</ogc:Literal></ogc:PropertyIsEqualTo></ogc:Filter>"
            f'<se:PolygonSymbolizer><se:Fill><se:SvgParameter name="fill">{c.hex}</se:SvgParameter>'
            f"</se:Fill></se:PolygonSymbolizer></se:Rule>"
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


def add_layer_style(gpkg: str | Path, layer: str, legend: Legend) -> None:
    """Add the default style row for ``layer`` to ``gpkg`` (table created if missing).

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
                (layer, STYLE_NAME, qml(legend), sld(legend, layer),
                 f"{legend.name} classes by class_name", GPKG_FIXED_DATE),
            )
            con.execute(
                "INSERT OR REPLACE INTO gpkg_contents (table_name, data_type, identifier, description, "
                "last_change) VALUES ('layer_styles', 'attributes', 'layer_styles', '', ?)",
                (GPKG_FIXED_DATE,),
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
