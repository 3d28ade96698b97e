"""The executor through the CLI: --run-dir resume, --workers 2 byte-identical, bad inputs as one line + exit code."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from minescape.cli.app import app


def _maps(out: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted((out / "maps").glob("*.tif"))}


def _classify(region, out: Path, *extra: str, sites: Path | None = None, scenes: list[Path] | None = None):
    args = ["lulc", "classify", str(sites or region.sites), str(out), "--dcm", str(region.dcm_dh),
            "--dcm-year", str(region.dcm_year), "--no-quicklook"]
    for scene in scenes or region.scenes:
        args += ["-s", str(scene)]
    return CliRunner().invoke(app, args + list(extra))


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    assert "Traceback" not in output, output
    return lines[0]


def test_lulc_classify_resumes_and_matches_across_modes(small_region, tmp_path):
    out, run_dir = tmp_path / "inproc", tmp_path / "inproc-run"
    res = _classify(small_region, out, "--run-dir", str(run_dir))
    assert res.exit_code == 0, res.output
    first = _maps(out)
    assert len(first) == 2
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "maps").glob("*.tif")}
    res = _classify(small_region, out, "--run-dir", str(run_dir))
    assert res.exit_code == 0, res.output
    assert {p.name: p.stat().st_mtime_ns for p in (out / "maps").glob("*.tif")} == mtimes  # nothing redone
    status = CliRunner().invoke(app, ["runs", "status", str(run_dir), "--strict"])
    assert status.exit_code == 0 and "2 total, 2 done, 0 failed, 0 not finished" in status.output
    # a changed option invalidates every unit it touches
    res = _classify(small_region, out, "--run-dir", str(run_dir), "--mmu", "900")
    assert res.exit_code == 0
    assert all(p.stat().st_mtime_ns != mtimes[p.name] for p in (out / "maps").glob("*.tif"))
    # the same command on a local 2-worker Dask cluster writes the same bytes as in-process
    ref = tmp_path / "ref"
    assert _classify(small_region, ref).exit_code == 0
    dask_out = tmp_path / "dask"
    res = _classify(small_region, dask_out, "--workers", "2", "--run-dir", str(tmp_path / "dask-run"))
    assert res.exit_code == 0, res.output
    assert _maps(dask_out) == _maps(ref) and len(_maps(ref)) == 2


def test_lulc_classify_bad_inputs(small_region, tmp_path):
    sites = tmp_path / "sites.gpkg"
    sites.write_bytes(small_region.sites.read_bytes()[:4000])
    res = _classify(small_region, tmp_path / "o1", sites=sites)
    assert res.exit_code == 2
    line = _one_error_line(res.output)
    assert str(sites) in line and "not a readable vector file" in line
    bad_scene = tmp_path / "S2A_MSIL2A_20190715T022551_N0213_R046_T50KQB_bad.tif"
    bad_scene.write_bytes(b"II*\x00" + b"\x05" * 2000)
    res = _classify(small_region, tmp_path / "o2", scenes=[bad_scene])
    assert res.exit_code == 2
    line = _one_error_line(res.output)
    assert str(bad_scene) in line and "not a readable raster" in line


def test_bad_executor_options(small_region, tmp_path):
    res = _classify(small_region, tmp_path / "o", "--workers", "0")
    assert res.exit_code == 2 and "--workers" in res.output
    res = _classify(small_region, tmp_path / "o", "--scheduler", "tcp://127.0.0.1:9")
    assert res.exit_code == 2
    line = _one_error_line(res.output)
    assert "tcp://127.0.0.1:9: cannot reach the Dask scheduler" in line


def test_bad_scheduler_address_is_one_line_at_once(small_region, tmp_path):
    """An address without a port (Dask would wait for its connect timeout, then raise a ValueError) or with a
    port that is not one is refused before anything is written, with a one-line error."""
    import time

    for address, what in [("foo", "no port"), ("tcp://127.0.0.1", "no port"), ("h:abc", "not a number"),
                          ("tcp://127.0.0.1:8786/x", "more than host:port"), ("http://h:8786", "scheme 'http'")]:
        t0 = time.perf_counter()
        res = _classify(small_region, tmp_path / "o", "--scheduler", address)
        assert res.exit_code == 2, res.output
        line = _one_error_line(res.output)
        assert f"{address}: not a Dask scheduler address" in line and what in line, line
        assert time.perf_counter() - t0 < 5
    assert not (tmp_path / "o").exists()


def test_scheduler_worker_in_another_folder_gets_the_clients_paths(small_region, tmp_path, monkeypatch):
    """A real scheduler whose worker runs in another working folder than the client (as on any real cluster):
    relative paths typed by the user mean the client's files, the maps land in the client's OUT, and the same
    command again finds them done."""
    import logging

    from distributed import Client, LocalCluster

    worker_cwd, client_cwd = tmp_path / "w" / "ork" / "er", tmp_path / "client"  # "../.." differs too
    worker_cwd.mkdir(parents=True)
    client_cwd.mkdir()
    monkeypatch.chdir(worker_cwd)  # the worker process starts here ...
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        assert list(client.run(os.getcwd).values()) == [str(worker_cwd)]
        monkeypatch.chdir(client_cwd)  # ... the command runs here

        def rel(path: Path) -> str:
            return os.path.relpath(path, client_cwd)

        args = ["lulc", "classify", rel(small_region.sites), "out", "--dcm", rel(small_region.dcm_dh),
                "--dcm-year", rel(small_region.dcm_year), "--no-quicklook", "--no-report",
                "--scheduler", cluster.scheduler_address, "--run-dir", "run"]
        for scene in small_region.scenes:
            args += ["-s", rel(scene)]
        assert all(not Path(a).is_absolute() for a in args[2:7])
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        maps = _maps(client_cwd / "out")
        assert len(maps) == 2
        assert not list(worker_cwd.iterdir())  # nothing written in the worker's folder
        mtimes = {p.name: p.stat().st_mtime_ns for p in (client_cwd / "out" / "maps").glob("*.tif")}
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        assert {p.name: p.stat().st_mtime_ns for p in (client_cwd / "out" / "maps").glob("*.tif")} == mtimes
    status = CliRunner().invoke(app, ["runs", "status", str(client_cwd / "run"), "--strict"])
    assert status.exit_code == 0 and "2 total, 2 done, 0 failed, 0 not finished" in status.output


@pytest.mark.parametrize("which", ["t1", "t2"])
def test_change_detect_names_a_corrupted_geotiff(small_region, tmp_path, which):
    bad = tmp_path / "corrupt.tif"
    bad.write_bytes(b"II*\x00" + b"\x09" * 3000)
    pair = [str(bad), str(small_region.t2)] if which == "t1" else [str(small_region.t1), str(bad)]
    res = CliRunner().invoke(app, ["change", "detect", *pair, str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    line = _one_error_line(res.output)
    assert str(bad) in line and "not a readable raster" in line


def _class_map(region, path: Path, site_id: str, *, bad_code: int | None = None) -> Path:
    """A per-site class map like `lulc classify` writes (legend, SITE_ID and YEAR tags)."""
    from rasterio.windows import Window

    from minescape.geo.raster import read_raster, write_raster
    from minescape.legend import MINING_LULC

    ras = read_raster(region.truth_lulc, window=Window(40, 30, 60, 50))
    data = ras.data.copy()
    if bad_code is not None:
        data[0, 5, 5] = bad_code
    return write_raster(ras.with_data(data), path, legend=MINING_LULC, tags={"SITE_ID": site_id, "YEAR": "2019"})


@pytest.mark.parametrize("problem", ["corrupt", "unexpected-values"])
def test_publish_reports_a_bad_class_map_and_publishes_the_rest(small_region, tmp_path, problem):
    maps = tmp_path / "maps"
    _class_map(small_region, maps / "S01.tif", "S01")
    bad = maps / "S02.tif"
    if problem == "corrupt":
        bad.write_bytes(b"II*\x00" + b"\x03" * 1000)
    else:
        _class_map(small_region, bad, "S02", bad_code=42)
    res = CliRunner().invoke(app, ["publish", str(maps), str(tmp_path / "release")])
    assert res.exit_code == 3, res.output
    assert "1 sites" in res.output  # the good map is published
    skipped = [line for line in res.output.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 1 and "S02.tif" in skipped[0]
    assert ("not a readable raster" if problem == "corrupt" else "values [42] are not in the mining_lulc legend") \
        in skipped[0]
