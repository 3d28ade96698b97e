"""A ``map predict`` killed outright (SIGKILL) mid-run leaves its temporary COG and the nested streamed GeoTIFF;
the next write into the folder, for any target, removes them (issue 17)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from minescape.cli.app import app

ROOT = Path(__file__).resolve().parents[2]


def test_killed_map_predict_leftovers_are_swept(tiny_unet, hr_scene, tmp_path):
    from minescape.geo.raster import Raster, write_raster
    from minescape.maps.train import save_checkpoint

    model = save_checkpoint(tiny_unet, tmp_path / "m.pt")
    rng = np.random.default_rng(0)
    g = hr_scene.image
    big = write_raster(Raster(rng.uniform(0, 0.4, (4, 1500, 1500)).astype(np.float32), g.crs, g.transform, np.nan,
                              g.band_names), tmp_path / "big.tif")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", "from minescape.cli.app import main; main()", "map", "predict",
                             str(big), str(model), str(out / "big_map.tif"), "--tile", "256"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(".tmp-*.stream.tif")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert list(out.glob(".tmp-*.stream.tif")), "the run never streamed (finished too fast?)"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    left = sorted(p.name for p in out.iterdir())
    assert left and all(n.startswith(".tmp-") for n in left) and any(n.endswith(".stream.tif") for n in left)
    assert not (out / "big_map.tif").exists()  # nothing half-written under the final name
    small = write_raster(g, tmp_path / "small.tif")
    res = CliRunner().invoke(app, ["map", "predict", str(small), str(model), str(out / "other.tif")])
    assert res.exit_code == 0, res.output
    # the killed run's files are gone, nested ones too; the map's QGIS style (class names) sits beside it
    assert sorted(p.name for p in out.iterdir()) == ["other.qml", "other.tif"]
    assert 'type="paletted"' in (out / "other.qml").read_text()
