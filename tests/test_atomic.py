"""Atomic outputs: a writer killed outright leaves a temporary file that the next write into the same folder
removes, whatever its target; live writers' temporary files are left alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from minescape.atomic import atomic_write_text, sweep_stale

WRITER = textwrap.dedent("""
    import os, signal, sys, time
    from minescape.atomic import atomic_path
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_text("half-written")
        print(tmp, flush=True)
        if sys.argv[2] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)
""")


def _writer(target: Path, mode: str) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), mode], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    return proc, Path(proc.stdout.readline().strip())


def test_killed_writer_leftover_is_swept_by_the_next_write(tmp_path):
    target, other = tmp_path / "map.tif", tmp_path / "other.tif"
    live, live_tmp = _writer(target, "sleep")  # first: a writer sweeps the folder's dead leftovers itself
    killed, stale = _writer(target, "kill")
    killed.wait(30)
    try:
        assert stale.exists() and live_tmp.exists()
        assert not target.exists()  # nothing half-written under the final name
        killed_other, stale_other = _writer(other, "kill")  # its first write swept the dead writer of map.tif
        killed_other.wait(30)
        assert not stale.exists() and stale_other.exists() and live_tmp.exists()
        atomic_write_text(target, "done")
        assert target.read_text() == "done"
        assert live_tmp.exists()  # a live writer's file is not touched
        assert not stale_other.exists()  # a dead writer of another target: removed by the same sweep
    finally:
        live.kill()
        live.wait(30)
    assert sweep_stale(target) == [live_tmp]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif"]


def test_a_folder_is_listed_once_per_process_not_once_per_write(tmp_path, monkeypatch):
    """Writing n files into one folder must not list it n times (O(n²) for a folder of patches or site maps)."""
    import os

    import minescape.atomic as atomic

    calls = []
    real = os.scandir
    monkeypatch.setattr(atomic.os, "scandir", lambda p: calls.append(p) or real(p))
    for i in range(50):
        atomic_write_text(tmp_path / f"f{i}.json", "{}")
    assert calls == [tmp_path] and len(list(tmp_path.iterdir())) == 50


def test_a_killed_writers_nested_temporary_files_are_swept_by_any_later_write(tmp_path):
    """``map predict`` streams into ``<tmp>.stream.tif`` before the COG; a kill leaves both, under another
    name than any later run's target. The next write into the folder (any target) removes every one of them,
    the old copy of a replaced folder included."""
    from minescape.atomic import HOST, replace_dir

    dead = 2**22 + 12345  # above the default pid_max: no live process has it
    names = [f".tmp-{HOST}-{dead}-abcd1234-{n}" for n in
             ("map.tif", "map.tif.stream.tif", "map.tif.stream.tif.aux.xml", "map.tif.ovr.tmp")]
    for n in names:
        (tmp_path / n).write_text("half")
    (tmp_path / f".tmp-{HOST}-{dead}-abcd1234-release").mkdir()
    assert len(list(tmp_path.iterdir())) == 5
    atomic_write_text(tmp_path / "other.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.json"]
    # replace_dir's aside copy carries the same prefix (a kill between its renames leaves a sweepable name)
    (tmp_path / "new").mkdir()
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "a").write_text("old")
    replace_dir(tmp_path / "new", tmp_path / "final")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final", "other.json"]


def test_a_long_final_name_is_written_and_its_temporary_name_fits(tmp_path):
    """A final name the file system accepts (here 250 bytes; 244 for a site id of 240 characters) is written:
    the temporary name is shortened, keeps the extension, leaves room for the suffixes writers add to it, and
    reads back as the final name in messages."""
    import os

    from minescape.atomic import NAME_MAX, TEMP_ROOM, public_name, temp_path

    for name in ("a" * 246 + ".tif", "é" * 123 + ".tif", "short.tif"):  # 250 bytes, 250 bytes (UTF-8), short
        final = tmp_path / name
        if len(name.encode()) > 200:
            final.write_text("the file system takes this name")  # what the test relies on is there
            final.unlink()
        tmp = temp_path(final)
        assert len(tmp.name.encode()) <= NAME_MAX - TEMP_ROOM and tmp.suffix == ".tif"
        assert (tmp.name.endswith(name)) == (name == "short.tif")
        assert public_name(tmp) == str(final)
        assert public_name(f"cannot open '{tmp}.stream.tif': no") == f"cannot open '{final}': no"
        tmp.with_name(tmp.name + ".stream.tif.aux.xml").write_text("a writer's sidecar fits too")
        atomic_write_text(final, "done")
        assert final.read_text() == "done"
        assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-") and not p.endswith(".aux.xml")]


def test_a_killed_writers_shortened_temporary_file_is_swept(tmp_path):
    """The shortened temporary name of a long final name keeps the host-pid prefix: a dead writer's is swept
    by the next write into the folder, a live writer's is left alone."""
    long_target = tmp_path / ("m" * 240 + ".tif")
    live, live_tmp = _writer(long_target, "sleep")
    killed, stale = _writer(long_target, "kill")
    killed.wait(30)
    try:
        assert stale.exists() and live_tmp.exists() and "~" in stale.name and len(stale.name) < 240
        atomic_write_text(tmp_path / "other.json", "{}")  # a fresh process's first write into the folder
        assert not stale.exists() and live_tmp.exists()
    finally:
        live.kill()
        live.wait(30)
    assert sweep_stale(long_target) == [live_tmp]


def test_a_final_name_too_long_for_the_file_system_is_one_output_error(tmp_path):
    """Past NAME_MAX the final name itself cannot exist: an OutputError naming it, never the temporary name."""
    import pytest

    from minescape.errors import OutputError

    final = tmp_path / ("z" * 300 + ".json")
    with pytest.raises(OutputError) as info:
        atomic_write_text(final, "{}")
    assert str(info.value) == f"{final}: cannot write (file name too long for the file system)"
    assert not list(tmp_path.iterdir())
