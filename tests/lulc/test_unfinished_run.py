"""A ``lulc classify`` run stopped part-way leaves its folder marked, and nothing reads it as a finished run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from minescape.cli.app import app
from minescape.unfinished import MARKER
from minescape.webreport.collect import collect_run

MINESCAPE = Path(sys.executable).with_name("minescape")


def _classify_args(region, out: Path) -> list[str]:
    args = ["lulc", "classify", str(region.sites), str(out), "--dcm", str(region.dcm_dh), "--dcm-year",
            str(region.dcm_year), "--no-quicklook", "--no-report"]
    for s in region.scenes:
        args += ["-s", str(s)]
    return args


def _maps(folder: Path) -> list[Path]:
    """Class maps under their final names (not a writer's ``.tmp-`` file)."""
    return [p for p in folder.glob("*.tif") if not p.name.startswith(".")] if folder.is_dir() else []


def _interrupt_once_maps_appear(args: list[str], maps: Path) -> tuple[int, str]:
    """Run the CLI in its own process group and press Ctrl-C (SIGINT to the group) as soon as the run has written
    a class map while its marker is there; returns the exit code and stderr. Fails if the run finished first."""
    env = dict(os.environ, MINESCAPE_PROGRESS="0")
    proc = subprocess.Popen([str(MINESCAPE), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        while proc.poll() is None:
            if (maps.parent / MARKER).is_file() and _maps(maps):
                os.killpg(proc.pid, signal.SIGINT)
                break
            time.sleep(0.005)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err.decode(errors="replace")


def test_an_interrupted_classify_is_refused_by_publish_and_shown_unfinished_in_the_report(small_region, tmp_path):
    out = tmp_path / "lulc"
    rc, err = _interrupt_once_maps_appear(_classify_args(small_region, out), out / "maps")
    assert rc != 0, err  # Ctrl-C landed while the run was writing maps (130; the exit code is not what is tested)
    assert (out / MARKER).is_file() and _maps(out / "maps")
    assert not (out / "sites.json").exists()  # a first run: nothing lists its maps

    res = CliRunner().invoke(app, ["publish", str(out / "maps"), str(tmp_path / "release")])
    assert res.exit_code == 2, res.output
    assert f"{out}: the 'minescape lulc classify' run into this folder did not finish" in res.output
    assert not (tmp_path / "release").exists()

    res = CliRunner().invoke(app, ["lulc", "evaluate", str(out), str(small_region.truth_lulc)])
    assert res.exit_code == 2 and "did not finish" in res.output, res.output

    contents = collect_run(out)
    assert contents.sections == []  # its maps are not drawn as a run's
    assert [m.what for m in contents.all_missing] == [str(out)]
    assert "did not finish" in contents.all_missing[0].why

    res = CliRunner().invoke(app, _classify_args(small_region, out))  # the same command, to the end
    assert res.exit_code == 0, res.output
    assert not (out / MARKER).exists()
    res = CliRunner().invoke(app, ["publish", str(out / "maps"), str(tmp_path / "release")])
    assert res.exit_code == 0, res.output
