"""Open a raster in QGIS (run by QGIS's own Python): print its renderer, as QGIS applied it, as one JSON line.

    python3 open_raster_in_qgis.py RASTER.tif
"""

import json
import sys

from qgis.core import QgsApplication, QgsRasterLayer

app = QgsApplication([], False)
app.initQgis()
layer = QgsRasterLayer(sys.argv[1], "raster")
renderer = layer.renderer()
out = {"valid": layer.isValid(), "renderer": renderer.type() if renderer else None, "stops": []}
if renderer is not None and renderer.type() == "singlebandpseudocolor":
    ramp = renderer.shader().rasterShaderFunction()
    out["stops"] = [[item.value, item.color.name()] for item in ramp.colorRampItemList()]
print(json.dumps(out))
app.exitQgis()
