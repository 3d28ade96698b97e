"""DCM layer file names: ``TDM1_DCM__10_<tile>_<CODE>*<KIND>1622_*.tif``.

A DLR DCM tile product ``TDM1_DCM__10_<tile>_<KIND>1622_V01_C`` (KIND ``FIRST`` or ``LAST``) holds the change
raster in ``DCM/`` and its auxiliary layers in ``DCM_AUXFILES/``. Layers are matched by pattern, not by one
exact name, the way users' public code finds them (for example
``TDM1_DCM__10_N28E076_DATE_LAST1622_V01_C.tif``):

* ``DCM_`` elevation change against the TanDEM-X 30 m EDEM (2011-2014), metres, float32, void -32767;
* ``DATE`` acquisition date of the new DEM scene used for each pixel, integer ``YYYYMMDD`` (valid when > 0);
* ``HAI_`` height accuracy indication, metres (combined height error of the new DEM and the EDEM);
* ``CIM_`` change indication mask, integer classes (where the DCM processor found changes and how reliable).
"""

from __future__ import annotations

import re
from enum import Enum

from minescape.dcm.tiles import TileName
from minescape.errors import InputError

LAYER_FILE = re.compile(
    r"^TDM1_DCM__10_(?P<tile>[NS]\d{2}[EW]\d{3})_(?P<code>DCM_|DATE|HAI_|CIM_)"
    r".*?(?P<kind>FIRST|LAST)1622_.*\.tiff?$",
    re.IGNORECASE,
)
DCM_VOID = -32767.0  # DLR's void value of the DCM (and HAI) layers


class MapKind(str, Enum):
    """Which change map of a tile: to the newest (LAST) or the oldest (FIRST) acquisition of 2016-2022."""

    LAST = "LAST"
    FIRST = "FIRST"


class Layer(str, Enum):
    """The four layers minescape reads from a DCM tile (value = the code in the file name)."""

    DCM = "DCM_"
    DATE = "DATE"
    HAI = "HAI_"
    CIM = "CIM_"


REQUIRED_LAYERS: tuple[Layer, ...] = (Layer.DCM, Layer.DATE, Layer.HAI, Layer.CIM)


def parse_layer_name(name: str) -> tuple[TileName, MapKind, Layer] | None:
    """``(tile, kind, layer)`` of a DCM layer file name (base name), or None when it is not one (a name of the
    pattern whose tile cannot exist, such as ``N95E010``, is not one either: one stray file must not stop the
    reading of a whole delivery)."""
    m = LAYER_FILE.match(name)
    if m is None:
        return None
    try:
        tile = TileName.parse(m["tile"].upper())
    except InputError:
        return None
    return tile, MapKind(m["kind"].upper()), Layer(m["code"].upper())


def layer_file_name(tile: TileName, kind: MapKind, layer: Layer, *, version: str = "V01_C") -> str:
    """DLR's file name of ``layer`` (e.g. ``TDM1_DCM__10_S23E116_DATE_LAST1622_V01_C.tif``)."""
    code = layer.value.rstrip("_")
    return f"TDM1_DCM__10_{tile.name}_{code}_{kind.value}1622_{version}.tif"


def product_name(tile: TileName, kind: MapKind, *, version: str = "V01_C") -> str:
    """DLR's product (ZIP and folder) name, e.g. ``TDM1_DCM__10_S23E116_LAST1622_V01_C``."""
    return f"TDM1_DCM__10_{tile.name}_{kind.value}1622_{version}"
