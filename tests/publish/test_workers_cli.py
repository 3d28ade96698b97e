"""`publish --workers`: both cores by default, the same release bytes as one process, a bad count in one line."""

from __future__ import annotations

import hashlib

from typer.testing import CliRunner

from minescape.cli.app import app
from minescape.threads import available_cores


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_default_workers_same_bytes_as_one(site_maps, tmp_path):
    runner = CliRunner()
    one = runner.invoke(app, ["publish", str(site_maps), str(tmp_path / "one"), "--max-features", "40",
                              "--workers", "1"])
    assert one.exit_code == 0, one.output
    default = runner.invoke(app, ["publish", str(site_maps), str(tmp_path / "default"), "--max-features", "40"])
    assert default.exit_code == 0, default.output
    digests = _digests(tmp_path / "one")
    assert len([n for n in digests if n.endswith(".zip")]) >= 3  # several regions were written
    assert digests == _digests(tmp_path / "default")
    if available_cores() >= 2:  # two processes asked for: a real pool, the same bytes
        two = runner.invoke(app, ["publish", str(site_maps), str(tmp_path / "two"), "--max-features", "40",
                                  "--workers", "2"])
        assert two.exit_code == 0, two.output
        assert digests == _digests(tmp_path / "two")


def test_bad_worker_count_is_one_line(site_maps, tmp_path):
    runner = CliRunner()
    for bad in ("0", str(available_cores() + 1)):
        res = runner.invoke(app, ["publish", str(site_maps), str(tmp_path / "x"), "--workers", bad])
        assert res.exit_code == 2
        assert "--workers" in res.output and len(res.output.strip().splitlines()) == 1
        assert not (tmp_path / "x").exists()
