"""minescape's figures in a user's process: the matplotlib backend stays the user's, no figure is registered with
pyplot (a loop of figures does not pile up), the PNGs are reproducible, and IPython can show a returned figure.

Backend and registry checks run in a fresh interpreter, so what this test process has imported or set does not
matter: it chooses a backend that is not Agg (``svg``, available headless) before minescape is imported.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Runs in a fresh interpreter; prints one JSON line of what it saw.
PROBE = r'''
import gc, json, sys, warnings, weakref
import matplotlib
matplotlib.use("svg")  # the user's backend (Jupyter's inline, QGIS's QtAgg stand in as svg here)
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

seen = {"backend_set": matplotlib.get_backend()}
# the checks can see what they look for: a pyplot figure is registered and stays alive after `del`
probe = plt.figure()
ref = weakref.ref(probe)
del probe
gc.collect()
seen["pyplot_figure_registered"] = len(plt.get_fignums())
seen["pyplot_figure_alive"] = ref() is not None
plt.close("all")

import geopandas as gpd
from shapely.geometry import box

import minescape.lulc.evaluate, minescape.lulc.pipeline, minescape.maps.validate  # the modules that draw lazily
from minescape.legend import MINING_LULC
from minescape.lulc.evaluate import write_report
from minescape.maps.validate import oa_map_figure
from minescape.report import confusion_matrix_figure, quicklook, save_figure

out = sys.argv[1]
rng = np.random.default_rng(0)
classes = rng.choice(MINING_LULC.codes, size=(30, 40)).astype(np.uint8)
units = gpd.GeoDataFrame({"unit": ["a", "b"], "n": [10, 0], "oa": [0.9, np.nan]},
                         geometry=[box(0, 0, 1, 1), box(1, 0, 2, 1)], crs="EPSG:32633")
refs, kinds = [], set()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for i in range(25):  # one figure per site, the caller drops each
        for fig in (confusion_matrix_figure(rng.integers(0, 50, (3, 3)), ["a", "b", "c"]),
                    quicklook(rng.random((3, 30, 40)), classes, MINING_LULC, title=f"site {i}"),
                    oa_map_figure(units)):
            kinds.add(isinstance(fig, Figure))
            refs.append(weakref.ref(fig))
            if i == 0:
                save_figure(fig, f"{out}/{len(refs)}.png")
            del fig
write_report({"confusion_matrix": [[5, 1], [2, 7]], "classes": ["a", "b"], "overall_accuracy": 0.8,
              "kappa": 0.6, "n": 15}, out)
gc.collect()
seen.update(
    backend_after=matplotlib.get_backend(), fignums_after=plt.get_fignums(), figures_made=len(refs),
    figures_alive=sum(r() is not None for r in refs), figure_kinds=sorted(kinds),
    warnings=sorted({str(w.message)[:80] for w in caught if "figure" in str(w.message).lower()}))
print(json.dumps(seen))
'''


def _probe(out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"} | {"MINESCAPE_PROGRESS": "0"}
    res = subprocess.run([sys.executable, "-c", PROBE, str(out)], capture_output=True, text=True, timeout=300,
                         cwd=ROOT, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_figures_leave_backend_and_pyplot_registry_alone(tmp_path):
    seen = _probe(tmp_path)
    # first, what is checked is there: the user's backend was set, and a pyplot figure would be seen and kept
    assert seen["backend_set"] == "svg"
    assert seen["pyplot_figure_registered"] == 1 and seen["pyplot_figure_alive"]
    assert seen["figures_made"] == 75 and seen["figure_kinds"] == [True]
    # then: minescape (imported, figures drawn and saved) changed neither
    assert seen["backend_after"] == "svg"
    assert seen["fignums_after"] == []
    assert seen["figures_alive"] == 0  # dropped figures are freed, none kept by pyplot
    assert seen["warnings"] == []  # no "More than 20 figures have been opened"
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) == 4 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_no_module_imports_pyplot_or_sets_the_backend():
    """Source rule: no module of minescape imports pyplot or calls ``matplotlib.use``."""
    pattern = re.compile(r"^\s*(import matplotlib\.pyplot|from matplotlib import pyplot|from matplotlib\.pyplot "
                         r"import|matplotlib\.use\()", re.MULTILINE)
    assert pattern.search("x = 1\n    import matplotlib.pyplot as plt\n")  # the pattern finds what it looks for
    assert pattern.search('matplotlib.use("Agg", force=False)\n')
    files = sorted((ROOT / "minescape").rglob("*.py"))
    assert len(files) > 50
    offenders = [str(p.relative_to(ROOT)) for p in files if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_saved_png_is_reproducible_and_repr_png_shows_the_figure(tmp_path):
    import numpy as np

    from minescape.legend import MINING_LULC
    from minescape.report import confusion_matrix_figure, quicklook, save_figure

    classes = np.random.default_rng(1).choice(MINING_LULC.codes, size=(20, 30)).astype(np.uint8)
    rgb = np.random.default_rng(2).random((3, 20, 30))
    for name, make in (("cm", lambda: confusion_matrix_figure(np.arange(9).reshape(3, 3), ["a", "b", "c"])),
                       ("ql", lambda: quicklook(rgb, classes, MINING_LULC, title="t"))):
        first = save_figure(make(), tmp_path / f"{name}1.png").read_bytes()
        second = save_figure(make(), tmp_path / f"{name}2.png").read_bytes()
        assert len(first) > 10_000 and first == second
        # IPython shows a Figure through _repr_png_ where matplotlib's notebook integration is off
        png = make()._repr_png_()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
