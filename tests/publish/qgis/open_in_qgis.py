"""Open one GPKG shard in QGIS (headless) and print, as JSON, what QGIS made of it.

Run by ``tests/publish/test_qgis.py`` with a Python that has QGIS's bindings (Debian: python3-qgis), not
with the project's venv: ``python3 open_in_qgis.py SHARD.gpkg [OUT.png]``.
"""

import json
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import Qgis, QgsApplication, QgsMapRendererParallelJob, QgsMapSettings, QgsVectorLayer  # noqa: E402
from qgis.PyQt.QtCore import QSize  # noqa: E402
from qgis.PyQt.QtGui import QColor  # noqa: E402

app = QgsApplication([], False)
app.setPrefixPath("/usr", True)
app.initQgis()
path = sys.argv[1]
name = os.path.splitext(os.path.basename(path))[0]
layer = QgsVectorLayer(f"{path}|layername={name}", name, "ogr")  # loads the default style from layer_styles
renderer = layer.renderer()
report = {
    "valid": layer.isValid(),
    "features": layer.featureCount(),
    "crs": layer.crs().authid(),
    "fields": [f.name() for f in layer.fields()],
    "renderer": renderer.type(),
    "attribute": renderer.classAttribute() if hasattr(renderer, "classAttribute") else None,
    "categories": [[c.value(), c.symbol().color().name()] for c in getattr(renderer, "categories", list)()],
    "qgis": Qgis.QGIS_VERSION,
}
if len(sys.argv) > 2:
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(800, 600))
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    report["rendered"] = bool(job.renderedImage().save(sys.argv[2], "png"))
print(json.dumps(report), flush=True)
os._exit(0)  # QgsApplication.exitQgis() can crash a headless process on the way out; nothing is left to save
