"""The executor: resume from the run folder, fingerprints, failures, and real Dask clusters with real SIGKILLs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import rasterio
from open_files import open_files_under

from minescape.errors import ConfigError, InputError, MissingInputError, UnitFailed
from minescape.runner import Executor, RunInterrupted, Unit, fingerprint, run_units
from minescape.runner_demo import ndvi_tile, tile_units
from minescape.runstate import read_states, summarize

# Functions of this module travel to Dask workers by value (the workers cannot import the tests folder).
cloudpickle.register_pickle_by_value(sys.modules[__name__])

ROOT = Path(__file__).resolve().parents[1]


def digests(folder: Path) -> dict[str, str]:
    """File name -> MD5 of every final GeoTIFF in ``folder`` (temporary files excluded)."""
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.tif"))
            if not p.name.startswith(".tmp-")}


def fault_job(unit: Unit) -> dict:
    """ndvi_tile, plus faults on demand: ``crash_once`` SIGKILLs its own worker process on the first
    attempt, ``crash_always`` on every attempt, ``sleep`` slows a unit down."""
    marker = unit.args.get("crash_once")
    if marker and not Path(marker).exists():
        Path(marker).write_text("crashed once")
        os.kill(os.getpid(), signal.SIGKILL)
    if unit.args.get("crash_always"):
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(unit.args.get("sleep", 0))
    result = ndvi_tile(unit)
    if unit.args.get("probe"):  # how many tasks the scheduler holds right now (bounded submission)
        from distributed import get_client

        result["scheduler_tasks"] = get_client().run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
    return result


def failing_write_job(unit: Unit) -> dict:
    """ndvi_tile, or with ``fail`` an error inside an atomic write that names the temporary file (as GDAL's do)."""
    from minescape.atomic import atomic_path

    if unit.args.get("fail"):
        with atomic_path(unit.args["out"]) as tmp:
            raise RuntimeError(f"driver failed writing '{tmp}.stream.tif'")
    return ndvi_tile(unit)


@pytest.fixture
def tiles(small_region, tmp_path):
    """NDVI tile units (64 px tiles: 20 units) of the small region writing under tmp_path/out."""
    def make(out: str = "out", size: int = 64):
        return tile_units(small_region.t1, tmp_path / out, size=size)
    return make


def test_fingerprint_tracks_files_and_config(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"1")
    b.write_bytes(b"2")
    fp = fingerprint([a, b], {"k": 1, "z": [1, 2]})
    assert fp == fingerprint([b, a], {"z": [1, 2], "k": 1})  # order-free
    assert fp != fingerprint([a, b], {"k": 2, "z": [1, 2]})
    assert fingerprint([a]) != fingerprint([b])
    c1 = fingerprint([a], content=True)
    os.utime(a, ns=(1, 1))
    assert fingerprint([a], content=True) == c1  # content mode ignores mtime
    old = fingerprint([a])
    a.write_bytes(b"10")
    assert fingerprint([a]) != old
    assert fingerprint([tmp_path]) != fingerprint([a])  # folder = every file under it
    with pytest.raises(MissingInputError, match="missing.bin: input not found"):
        fingerprint([tmp_path / "missing.bin"])


def test_executor_validates_choices():
    with pytest.raises(ConfigError, match="choose one of: inprocess, local, scheduler"):
        Executor(mode="cloud")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs a scheduler address"):
        Executor(mode="scheduler")
    with pytest.raises(ConfigError, match="unique"):
        run_units([Unit("a", {}), Unit("a", {})], ndvi_tile)


def test_resume_skips_done_units_and_redoes_changed_ones(tiles, tmp_path, small_region):
    units = tiles()
    run_dir = tmp_path / "run"
    ex = Executor(run_dir=run_dir)
    first = run_units(units, ndvi_tile, executor=ex)
    assert first.ok and len(first.results) == len(units) == 20 and not first.skipped
    reference = digests(tmp_path / "out")
    assert len(reference) == 20
    states_before = {k: v.key for k, v in read_states(run_dir).items()}

    second = run_units(units, ndvi_tile, executor=ex)
    assert sorted(second.skipped) == sorted(u.id for u in units) and second.ran == 0
    assert second.results == first.results  # recorded results come back for skipped units

    # a changed input/config touches only its units; a deleted output is redone
    changed = [Unit(u.id, u.args, u.fingerprint + "-cfg2") if i in (3, 7) else u for i, u in enumerate(units)]
    Path(units[11].args["out"]).unlink()
    third = run_units(changed, ndvi_tile, executor=ex)
    assert sorted(set(u.id for u in units) - set(third.skipped)) == sorted([units[3].id, units[7].id, units[11].id])
    assert digests(tmp_path / "out") == reference
    states_after = {k: v.key for k, v in read_states(run_dir).items()}
    assert {k for k in states_after if states_after[k] != states_before[k]} == {units[3].id, units[7].id}

    # a changed scene file changes the fingerprint of every unit reading it
    fp = fingerprint([small_region.t1], {"index": "NDVI", "size": 64})
    assert fp == units[0].fingerprint
    os.utime(small_region.t1, ns=(10**18, 10**18))
    assert fingerprint([small_region.t1], {"index": "NDVI", "size": 64}) != fp


def test_bad_unit_reported_others_complete(tiles, tmp_path):
    bad = tmp_path / "corrupt.tif"
    bad.write_bytes(b"II*\x00" + b"\x07" * 500)
    units = tiles()[:5] + [Unit("bad", {"scene": str(bad), "window": [0, 0, 8, 8], "out": str(tmp_path / "b.tif")})]
    run_dir = tmp_path / "run"
    summary = run_units(units, ndvi_tile, executor=Executor(run_dir=run_dir))
    assert len(summary.results) == 5 and list(summary.failed) == ["bad"]
    assert summary.failed["bad"].startswith(f"{bad}: not a readable raster")
    assert "\n" not in summary.failed["bad"]
    with pytest.raises(UnitFailed, match=r"1 of 6 tiles failed: bad: .*corrupt.tif: not a readable raster"):
        summary.raise_for_failures("tiles")
    s = summarize(run_dir)
    assert len(s["done"]) == 5 and s["failed"] == {"bad": summary.failed["bad"]} and not s["missing"]
    # the failed unit is retried by the next run; the done ones are not
    again = run_units(units, ndvi_tile, executor=Executor(run_dir=run_dir))
    assert len(again.skipped) == 5 and list(again.failed) == ["bad"]


def test_long_output_names_work_and_failures_name_the_final_path(tiles, tmp_path):
    """A 244-character output name (a site id of 240 characters) is legal and is written; a unit failing inside
    an atomic write is reported with the final name, never the temporary ``.tmp-...`` one."""
    tile = tiles()[0]
    long_out, short_out = tmp_path / ("M" * 240 + ".tif"), tmp_path / "short.tif"
    units = [Unit("long", {**tile.args, "out": str(long_out)}),
             Unit("long-fails", {**tile.args, "out": str(long_out.with_name("N" * 240 + ".tif")), "fail": True}),
             Unit("short-fails", {**tile.args, "out": str(short_out), "fail": True})]
    summary = run_units(units, failing_write_job, executor=Executor(run_dir=tmp_path / "run"))
    assert list(summary.results) == ["long"] and long_out.exists() and len(long_out.name) == 244
    assert sorted(summary.failed) == ["long-fails", "short-fails"]
    assert f"driver failed writing '{tmp_path / ('N' * 240 + '.tif')}'" in summary.failed["long-fails"]
    assert f"driver failed writing '{short_out}'" in summary.failed["short-fails"]
    assert not any(".tmp-" in reason for reason in summary.failed.values())
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_run_folder_lock_refuses_a_second_live_run(tmp_path):
    from minescape.runstate import locked

    with locked(tmp_path / "run"):
        with pytest.raises(InputError, match="in use by another running process"):
            run_units([Unit("a", {})], ndvi_tile, executor=Executor(run_dir=tmp_path / "run"))


def test_local_cluster_same_bytes_worker_crash_and_bad_unit(tiles, tmp_path):
    """A real 2-worker LocalCluster: byte-identical outputs, a unit that SIGKILLs its worker once is
    retried elsewhere, a unit that always kills its worker and a corrupt input are reported."""
    inproc = run_units(tiles("ref"), ndvi_tile)
    assert inproc.ok
    units = tiles("dask")
    units[4] = Unit(units[4].id, {**units[4].args, "crash_once": str(tmp_path / "crashed-marker")},
                    units[4].fingerprint)
    bad = tmp_path / "corrupt.tif"
    bad.write_bytes(b"not a tiff at all")
    units.append(Unit("corrupt", {"scene": str(bad), "window": [0, 0, 8, 8], "out": str(tmp_path / "c.tif")}))
    units.append(Unit("killer", {"crash_always": True, "out": str(tmp_path / "k.tif")}))
    run_dir = tmp_path / "run"
    summary = run_units(units, fault_job, executor=Executor(mode="local", workers=2, run_dir=run_dir,
                                                           allowed_failures=1))
    assert (tmp_path / "crashed-marker").exists()  # the worker really died once
    assert sorted(summary.failed) == ["corrupt", "killer"]
    assert "not a readable raster" in summary.failed["corrupt"]
    assert "worker process died 4 times" in summary.failed["killer"]  # (allowed_failures + 1) x 2 submissions
    assert len(summary.results) == 20
    assert digests(tmp_path / "dask") == digests(tmp_path / "ref")
    for uid, res in summary.results.items():
        assert res["mean_ndvi"] == inproc.results[uid]["mean_ndvi"]
    # results come back in unit order whatever the completion order, so summaries written from them match
    assert list(summary.results) == [u.id for u in units if u.id in summary.results]
    assert summarize(run_dir)["info"]["mode"] == "local"


def test_scheduler_mode_survives_external_worker_sigkill(tiles, tmp_path):
    """An existing scheduler (a LocalCluster started here): SIGKILL one worker process mid-run from
    outside; the run completes with every output byte-identical to an in-process run."""
    import logging

    from distributed import Client, LocalCluster

    run_units(tiles("ref"), ndvi_tile)
    units = [Unit(u.id, {**u.args, "sleep": 0.15, "probe": True}, u.fingerprint) for u in tiles("dask")]
    run_dir = tmp_path / "run"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        killed = []

        def killer():
            deadline = time.time() + 60
            while time.time() < deadline:
                if len(read_states(run_dir)) >= 4:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                    return
                time.sleep(0.02)

        thread = threading.Thread(target=killer)
        thread.start()
        summary = run_units(units, fault_job, executor=Executor(mode="scheduler", scheduler=cluster.scheduler_address,
                                                               run_dir=run_dir))
        thread.join()
    assert killed, "the worker was not killed during the run"
    assert summary.ok and len(summary.results) == 20
    # never more than 4 units per worker thread (2 threads) held by the scheduler, of 20
    assert max(r["scheduler_tasks"] for r in summary.results.values()) <= 8
    assert digests(tmp_path / "dask") == digests(tmp_path / "ref")


JOB_SCRIPT = textwrap.dedent('''
    """A run killed with SIGKILL and resumed: each unit writes a ~1 MB deflated GeoTIFF atomically."""
    import json, sys
    from pathlib import Path
    import numpy as np
    from affine import Affine
    from minescape.geo.raster import Raster, write_raster
    from minescape.runner import Executor, Unit, run_units

    def job(unit):
        rng = np.random.default_rng(unit.args["seed"])
        data = rng.integers(0, 10000, (4, 256, 256)).astype("uint16")
        out = write_raster(Raster(data, "EPSG:32633", Affine(10, 0, 500000, 0, -10, 4100000), 0), unit.args["out"])
        return {"outputs": [str(out)], "sum": int(data.sum())}

    if __name__ == "__main__":
        out, run_dir, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
        units = [Unit(f"u{i:03d}", {"seed": i, "out": str(out / f"u{i:03d}.tif")}, "v1") for i in range(40)]
        executor = Executor(mode=mode, workers=2, run_dir=None if run_dir == "-" else Path(run_dir))
        s = run_units(units, job, executor=executor)
        print(json.dumps({"done": len(s.results), "skipped": len(s.skipped), "failed": len(s.failed)}))
''')


def _start(script: Path, out: Path, run_dir: str, mode: str = "inprocess") -> subprocess.Popen:
    env = {**os.environ, "MINESCAPE_PROGRESS": "0", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(script), str(out), run_dir, mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _kill_after(proc: subprocess.Popen, run_dir: Path, n_states: int, extra_delay: float) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(read_states(run_dir)) >= n_states:
            break
        time.sleep(0.005)
    time.sleep(extra_delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _assert_final_outputs_complete(out: Path) -> None:
    """Every file under a final name opens and decodes completely (nothing half-written)."""
    for path in out.glob("u*.tif"):
        with rasterio.open(path) as src:
            assert src.read().shape == (4, 256, 256)


def test_sigkilled_run_resumes_to_identical_outputs(tmp_path):
    """SIGKILL a whole run three times at different moments (some mid-write), then finish it."""
    script = tmp_path / "job.py"
    script.write_text(JOB_SCRIPT)
    ref = _start(script, tmp_path / "ref", "-")
    ref_out, ref_err = ref.communicate(timeout=120)
    assert ref.returncode == 0, ref_err
    assert json.loads(ref_out)["done"] == 40

    out, run_dir = tmp_path / "out", tmp_path / "run"
    done_at_kill = []
    for n_states, delay in ((6, 0.0), (15, 0.013), (27, 0.031)):
        proc = _start(script, out, str(run_dir))
        _kill_after(proc, run_dir, n_states, delay)
        assert proc.returncode == -signal.SIGKILL
        _assert_final_outputs_complete(out)
        done_at_kill.append(len(read_states(run_dir)))
    assert done_at_kill[0] < 40 and done_at_kill == sorted(done_at_kill)
    final = _start(script, out, str(run_dir))
    stdout, stderr = final.communicate(timeout=120)
    assert final.returncode == 0, stderr
    result = json.loads(stdout)
    assert result == {"done": 40, "skipped": done_at_kill[-1], "failed": 0}
    assert digests(out) == digests(tmp_path / "ref")
    assert len(digests(out)) == 40


@pytest.mark.slow
def test_sigkilled_local_cluster_run_resumes(tmp_path):
    """The same with a 2-worker local cluster: kill the client process, resume, identical outputs."""
    script = tmp_path / "job.py"
    script.write_text(JOB_SCRIPT)
    ref = _start(script, tmp_path / "ref", "-")
    ref.communicate(timeout=120)
    out, run_dir = tmp_path / "out", tmp_path / "run"
    proc = _start(script, out, str(run_dir), "local")
    _kill_after(proc, run_dir, 12, 0.0)
    time.sleep(3)  # orphaned workers notice the dead scheduler and exit
    _assert_final_outputs_complete(out)
    killed_at = len(read_states(run_dir))
    final = _start(script, out, str(run_dir), "local")
    stdout, stderr = final.communicate(timeout=180)
    assert final.returncode == 0, stderr
    assert json.loads(stdout) == {"done": 40, "skipped": killed_at, "failed": 0}
    assert digests(out) == digests(tmp_path / "ref")


def test_runs_status_cli(tiles, tmp_path):
    from typer.testing import CliRunner

    from minescape.cli.app import app

    bad = tmp_path / "corrupt.tif"
    bad.write_bytes(b"II*\x00junk")
    units = tiles()[:3] + [Unit("bad", {"scene": str(bad), "window": [0, 0, 8, 8], "out": str(tmp_path / "b.tif")})]
    run_units(units, ndvi_tile, description="ndvi", executor=Executor(run_dir=tmp_path / "run"))
    runner = CliRunner()
    res = runner.invoke(app, ["runs", "status", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert "4 total, 3 done, 1 failed, 0 not finished" in res.output
    assert "corrupt.tif: not a readable raster" in res.output
    res = runner.invoke(app, ["runs", "status", str(tmp_path / "run"), "--strict", "--all"])
    assert res.exit_code == 3 and "tile_00_00" in res.output
    res = runner.invoke(app, ["runs", "status", str(tmp_path)])
    assert res.exit_code == 2 and "not a run folder" in res.output


def test_demo_stage(small_region, tmp_path):
    from rich.console import Console

    from minescape.demo import DemoContext
    from minescape.runner_demo import run

    ctx = DemoContext(region=small_region, out=tmp_path, seed=1, console=Console(file=open(os.devnull, "w")))
    lines = run(ctx)
    assert any("tile_bad" in line and "not a readable raster" in line for line in lines)
    states = read_states(ctx.outputs["runner_run_dir"])
    assert sum(s.status == "done" for s in states.values()) == len(states) - 1 >= 4
    assert states["tile_bad"].status == "failed"
    assert np.isfinite(states["tile_00_00"].result["mean_ndvi"])


def test_journal_survives_a_cut_line_and_is_compacted(tmp_path):
    from minescape.runstate import JOURNAL

    units = [Unit(f"u{i}", {"i": i}) for i in range(30)]
    run_dir = tmp_path / "run"
    run_units(units[:10], trivial_job, executor=Executor(run_dir=run_dir))
    journal = run_dir / JOURNAL
    with open(journal, "a") as fh:
        fh.write('{"id": "u10", "key": "ab')  # a line cut by a SIGKILL mid-write
    assert sorted(read_states(run_dir)) == sorted(u.id for u in units[:10])
    summary = run_units(units, trivial_job, executor=Executor(run_dir=run_dir))
    assert len(summary.skipped) == 10 and len(summary.results) == 30
    assert len(read_states(run_dir)) == 30
    for _ in range(5):  # failed units are appended again at every run ...
        run_units([Unit(u.id, {"i": -1}) for u in units], trivial_job, executor=Executor(run_dir=run_dir))
    lines = journal.read_text().splitlines()
    assert len(lines) <= 2 * 30 + 100 + 30  # ... and the journal is compacted when it doubles
    assert {s.status for s in read_states(run_dir).values()} == {"failed"}


@pytest.mark.parametrize("info", [{"unit_ids": 5}, {"unit_ids": ["a", 3]}, {"unit_ids": ["a"], "finished": 7},
                                  {"unit_ids": ["a"], "description": ["x"]}])
def test_runs_status_names_a_run_json_with_wrong_types(tmp_path, info):
    from typer.testing import CliRunner

    from minescape.cli.app import app

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps(info))
    res = CliRunner().invoke(app, ["runs", "status", str(run_dir), "--all"])
    assert res.exit_code == 2, res.output
    assert res.output.startswith(f"error: {run_dir / 'run.json'}: ") and "not " in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_journal_lines_with_wrong_types_count_as_cut_lines(tmp_path):
    """A journal line whose fields have other types (seconds as text, id as a number, ...) is one a run did not
    write: ignored like a cut line, so its unit is not finished (status) and is redone (resume)."""
    from typer.testing import CliRunner

    from minescape.cli.app import app
    from minescape.runstate import JOURNAL

    run_dir = tmp_path / "run"
    run_units([Unit("a", {"i": 1}), Unit("b", {"i": 2})], trivial_job, executor=Executor(run_dir=run_dir))
    good = [json.loads(line) for line in (run_dir / JOURNAL).read_text().splitlines()]
    assert [d["id"] for d in good] == ["a", "b"] and all(isinstance(d["seconds"], float) for d in good)
    bad = [{**good[0], "seconds": "1.5"}, {**good[1], "attempts": None}, {**good[0], "id": 5}, [1, 2], "text",
           {**good[1], "status": "finished"}, {**good[0], "reason": 3, "status": "failed"}, {**good[0], "key": None}]
    (run_dir / JOURNAL).write_text("".join(json.dumps(d) + "\n" for d in bad))
    assert read_states(run_dir) == {}
    res = CliRunner().invoke(app, ["runs", "status", str(run_dir), "--all", "--strict"])
    assert res.exit_code == 3, res.output
    assert "2 total, 0 done, 0 failed, 2 not finished" in res.output and "Traceback" not in res.output
    again = run_units([Unit("a", {"i": 1}), Unit("b", {"i": 2})], trivial_job, executor=Executor(run_dir=run_dir))
    assert again.ok and not again.skipped and sorted(read_states(run_dir)) == ["a", "b"]


def trivial_job(unit: Unit) -> dict:
    """Returns its number; negative numbers fail."""
    if unit.args["i"] < 0:
        raise ValueError("negative")
    return {"i": unit.args["i"]}


def test_status_tells_a_running_run_from_an_interrupted_one(tmp_path):
    from minescape.runstate import is_running, locked, write_run_info

    run_dir = tmp_path / "run"
    write_run_info(run_dir, {"description": "x", "unit_ids": ["a"]})
    assert not is_running(run_dir)
    with locked(run_dir):
        assert is_running(run_dir) and summarize(run_dir)["running"]
    assert not summarize(run_dir)["running"] and summarize(run_dir)["missing"] == ["a"]


def test_several_units_per_task_same_bytes_and_killer_found(tiles, tmp_path):
    """Units run 4 to a Dask task: identical outputs; a unit that kills its worker takes its task down, the
    task is split into one task per unit, the bystanders complete and only the killer is reported."""
    from minescape.runner_dask import units_per_task

    assert units_per_task(240, 2) == 15 and units_per_task(20, 2) == 1 and units_per_task(10_000, 1) == 16
    inproc = run_units(tiles("ref"), ndvi_tile)
    units = tiles("dask")
    units.insert(5, Unit("killer", {"crash_always": True, "out": str(tmp_path / "k.tif")}))
    summary = run_units(units, fault_job, executor=Executor(mode="local", workers=2, allowed_failures=0,
                                                           units_per_task=4))
    assert list(summary.failed) == ["killer"]
    assert "worker process died" in summary.failed["killer"]
    assert len(summary.results) == 20 and not (tmp_path / "k.tif").exists()
    assert digests(tmp_path / "dask") == digests(tmp_path / "ref")
    assert list(summary.results) == [u.id for u in units if u.id != "killer"]
    assert {k: v["mean_ndvi"] for k, v in summary.results.items()} == \
        {k: v["mean_ndvi"] for k, v in inproc.results.items()}
    with pytest.raises(ConfigError, match="units_per_task"):
        Executor(units_per_task=0)


def probe_pool(unit: Unit) -> dict:
    """ndvi_tile, plus what the reader pool holds open under the scene's folder while the unit runs."""
    result = ndvi_tile(unit)
    result["open"] = len(open_files_under(Path(unit.args["scene"]).parent))
    return result


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_inprocess_run_opens_a_scene_once_and_closes_it_on_return(small_region, tmp_path):
    """In one run the units share one open reader of their scene (opened once, not once per unit); when
    run_units returns nothing stays open, so a caller that deletes the inputs frees their space."""
    import shutil

    from minescape.geo.handles import pool

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    scene = Path(shutil.copy(small_region.t1, scratch / Path(small_region.t1).name))
    units = tile_units(scene, tmp_path / "out", size=64)
    opened = pool().opened
    summary = run_units(units, probe_pool)
    assert summary.ok and len(units) > 4
    assert all(r["open"] >= 1 for r in summary.results.values())  # held open while the run goes on
    assert pool().opened - opened == 1  # one open for all the units
    assert open_files_under(scratch) == [] and pool().idle_count() == 0
    shutil.rmtree(scratch)
    assert open_files_under(scratch) == []


def worker_environ(unit: Unit) -> dict:
    """The thread variables a Dask worker process sees."""
    return {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def test_local_cluster_leaves_the_callers_environment_as_it_was(monkeypatch):
    """Dask's nannies run in the caller's process and write the variables their workers inherit (one BLAS/OpenMP
    thread, glibc's trim threshold, a hash seed) into os.environ; a local run puts them back once the cluster
    is closed, so processes the caller starts afterwards do not inherit them."""
    from minescape.runner_dask import NANNY_ENVIRON, _nanny_environ

    keys = _nanny_environ()
    assert {"OMP_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_", *NANNY_ENVIRON} <= set(keys)
    for k in keys:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # a caller's own value: kept, and workers get it
    before = dict(os.environ)
    summary = run_units([Unit("u0", {}), Unit("u1", {})], worker_environ, executor=Executor(mode="local", workers=1))
    assert summary.ok
    # the workers did get Dask's settings, so the nanny did set them in this process before spawning them
    assert summary.results["u0"] == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "1"}
    changed = {k: (before.get(k), os.environ.get(k)) for k in set(before) | set(os.environ)
               if before.get(k) != os.environ.get(k)}
    assert changed == {}
    out = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('OMP_NUM_THREADS'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "None"


def interrupting_job(unit: Unit) -> dict:
    """A unit that is Ctrl-C'd while it runs (``interrupt``), else a trivial result."""
    if unit.args.get("interrupt"):
        raise KeyboardInterrupt
    return {"id": unit.id}


def test_ctrl_c_raises_run_interrupted_with_counts_and_the_run_resumes(tmp_path):
    """Ctrl-C in the middle of a run: a KeyboardInterrupt that says how far it got; the units done are recorded and
    the same run again does only the rest. The CLI prints it as one line (exit 130)."""
    from minescape.cli.common import interrupted_line

    run_dir = tmp_path / "run"
    units = [Unit(f"u{i}", {"interrupt": i == 3}) for i in range(5)]
    with pytest.raises(RunInterrupted) as info:
        run_units(units, interrupting_job, description="tiles", executor=Executor(run_dir=run_dir))
    exc = info.value
    assert isinstance(exc, KeyboardInterrupt)
    assert (exc.done, exc.failed, exc.total, exc.run_dir) == (3, 0, 5, run_dir)
    assert str(exc) == "3 of 5 units done (tiles)"
    assert sorted(read_states(run_dir)) == ["u0", "u1", "u2"]
    assert interrupted_line(exc) == f"interrupted: 3 of 5 units done (tiles); the same command again does the rest " \
                                    f"(recorded in {run_dir})"
    again = run_units([Unit(u.id, {"interrupt": False}) for u in units], interrupting_job, description="tiles",
                      executor=Executor(run_dir=run_dir))
    assert again.ok and sorted(again.skipped) == ["u0", "u1", "u2"] and len(again.results) == 5

    with pytest.raises(RunInterrupted) as info:  # no run folder: said so, and how to get one
        run_units(units, interrupting_job, description="tiles")
    assert info.value.run_dir is None and "--run-dir" in interrupted_line(info.value)
