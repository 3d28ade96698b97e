"""inspect: a good release passes; deliberately broken releases list every violation (file, fid, problem)."""

from __future__ import annotations

import shutil
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import shapely
from typer.testing import CliRunner

from minescape.cli.app import app
from minescape.errors import InputError
from minescape.legend import MINING_LULC
from minescape.publish.inspect import inspect_release
from minescape.publish.shards import write_shard


def _loose(release: Path, dest: Path) -> list[Path]:
    """The release's GeoPackages extracted into ``dest`` (a release laid out without ZIPs or manifest)."""
    dest.mkdir()
    for z in sorted(release.glob("*.zip")):
        with zipfile.ZipFile(z) as zf:
            zf.extractall(dest)
    return sorted(dest.glob("*.gpkg"))


def _sql(path: Path, statement: str) -> None:
    con = sqlite3.connect(path)
    # GPKG R-tree triggers call SpatiaLite-style functions that plain sqlite lacks
    con.create_function("ST_IsEmpty", 1, lambda g: 0)
    for name in ("ST_MinX", "ST_MaxX", "ST_MinY", "ST_MaxY"):
        con.create_function(name, 1, lambda g: 0.0)
    with con:
        con.execute(statement)
    con.close()


def test_good_release_passes(release):
    report = inspect_release(release)
    assert report.ok, report.violations
    assert report.features == sum(n for n, _ in report.by_class_year.values())
    assert len(report.files) >= 4
    assert {y for _, y in report.by_class_year} == {2020, 2021}


def test_broken_attributes_are_all_reported(release, tmp_path):
    files = _loose(release, tmp_path / "broken")
    a, b = files[0], files[1]
    dup = pyogrio.raw.read(a, layer=a.stem, columns=["index_n"])[3][0][2]
    _sql(b, f'UPDATE "{b.stem}" SET index_n = {dup} WHERE fid = 1')
    _sql(a, f'UPDATE "{a.stem}" SET area_m2 = area_m2 * 1.01 WHERE fid = 3')
    _sql(a, f'UPDATE "{a.stem}" SET class_name = \'Gold mine\' WHERE fid = 2')
    _sql(a, f'UPDATE "{a.stem}" SET year = 1850 WHERE fid = 4')
    _sql(a, f'UPDATE "{a.stem}" SET year = NULL WHERE fid = 5')
    report = inspect_release(tmp_path / "broken")
    got = {(v.file, v.fid, v.problem.split(" ")[0]) for v in report.violations}
    assert got == {
        (b.name, 1, "index_n"), (a.name, 3, "area_m2"), (a.name, 2, "class_name"), (a.name, 4, "year"),
        (a.name, 5, "year"),
    }
    assert any(f"already used by {a.name} fid 3" in v.problem for v in report.violations)
    # the cap, per file
    capped = inspect_release(tmp_path / "broken", max_features=5)
    assert sum("more than the cap of 5" in v.problem for v in capped.violations) == len(files)


def test_bad_geometries_schema_and_fids(tmp_path):
    folder = tmp_path / "rel"
    folder.mkdir()
    bowtie = shapely.Polygon([(10, 10), (10.01, 10.01), (10.01, 10), (10, 10.01)])
    good = shapely.box(10, 10, 10.01, 10.01)
    line = shapely.LineString([(0, 0), (1, 1)])
    write_shard(folder / "a.gpkg", np.array([good, bowtie, line], dtype=object), index_n=np.array([1, 2, 3]),
                class_name=np.array(["Open pit"] * 3, dtype=object), area_m2=np.full(3, 1.0),
                year=np.full(3, 2020), crs=4326, legend=MINING_LULC)
    # a file without 'year', with an extra field and an attribute 'fid' that repeats
    pyogrio.raw.write(folder / "b.gpkg", shapely.to_wkb(np.array([good, good])),
                      [np.array([4, 5]), np.array(["Vegetation"] * 2, dtype=object), np.array([1.0, 1.0]),
                       np.array(["x", "y"], dtype=object), np.array([7, 7])],
                      ["index_n", "class_name", "area_m2", "note", "fid"], layer="b", driver="GPKG",
                      geometry_type="Polygon", crs="EPSG:4326", layer_options={"FID": "ogc_fid"})
    report = inspect_release(folder)
    lines = [str(v) for v in report.violations]
    assert any(s.startswith("a.gpkg: fid 2: invalid geometry (Self-intersection") for s in lines)
    assert any(s.startswith("a.gpkg: fid 3: geometry is a") for s in lines)
    assert any(s.startswith("a.gpkg: fid 1: area_m2 1.000 differs") for s in lines)
    assert "b.gpkg: missing field 'year' (integer)" in lines
    assert any(s.startswith("b.gpkg: unexpected field 'note'") for s in lines)
    assert any(s.startswith("b.gpkg: fid 7: fid column 7 is not unique") for s in lines)
    assert inspect_release(folder, allow_extra_columns=True).violations != report.violations


def test_text_in_number_fields_is_reported_not_a_crash(tmp_path):
    """A shard whose index_n, area_m2 and year are text (one value of each a number): the field types and each
    value that is not a number are violations, the numbers among them still count."""
    from pyproj import Geod

    folder = tmp_path / "rel"
    folder.mkdir()
    boxes = np.array([shapely.box(10, 10, 10.001, 10.001), shapely.box(11, 10, 11.001, 10.001)])
    area = abs(Geod(ellps="WGS84").geometry_area_perimeter(boxes[1])[0])
    pyogrio.raw.write(folder / "t.gpkg", shapely.to_wkb(boxes),
                      [np.array(["one", "2"], dtype=object), np.array(["Open pit"] * 2, dtype=object),
                       np.array(["big", repr(area)], dtype=object), np.array(["twenty", "2020"], dtype=object)],
                      ["index_n", "class_name", "area_m2", "year"], layer="t", driver="GPKG",
                      geometry_type="Polygon", crs="EPSG:4326")
    lines = [str(v) for v in inspect_release(folder).violations]
    assert "t.gpkg: field 'year' is object, expected integer" in lines
    assert {"t.gpkg: fid 1: index_n 'one' is not an integer", "t.gpkg: fid 1: area_m2 'big' is not a number",
            "t.gpkg: fid 1: year 'twenty' is not an integer in 1984..2100"} <= set(lines)
    assert not [s for s in lines if s.startswith("t.gpkg: fid 2:")]


def test_tampered_release_and_cli(release, tmp_path):
    broken = tmp_path / "copy"
    shutil.copytree(release, broken)
    (broken / "README.md").write_text("changed")
    zips = sorted(broken.glob("*.zip"))
    zips[-1].unlink()
    runner = CliRunner()
    res = runner.invoke(app, ["inspect", str(broken)])
    assert res.exit_code == 1
    assert "README.md: SHA-256 differs from manifest.json" in res.output
    assert f"{zips[-1].name}: listed in manifest.json but missing" in res.output
    ok = runner.invoke(app, ["inspect", *map(str, sorted(release.glob("*.zip")))])
    assert ok.exit_code == 0, ok.output
    assert "ok: no violations" in ok.output and "class_name" in ok.output
    bad = runner.invoke(app, ["inspect", str(tmp_path / "nothing")])
    assert bad.exit_code == 2
    with pytest.raises(InputError):
        inspect_release(tmp_path / "nothing")


def test_cli_publish(site_maps, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["publish", str(site_maps), str(tmp_path / "r"), "--max-features", "100"])
    assert res.exit_code == 0, res.output
    assert "features from 5 sites" in res.output
    res = runner.invoke(app, ["publish", str(site_maps), str(tmp_path / "r2"), "--connectivity", "6"])
    assert res.exit_code == 2 and "choose one of: 4, 8" in res.output
    maps = tmp_path / "maps"
    shutil.copytree(site_maps, maps)
    (maps / "bad.tif").write_bytes(b"xx")
    res = runner.invoke(app, ["publish", str(maps), str(tmp_path / "r3")])
    assert res.exit_code == 3 and "bad.tif" in res.output


def test_zips_with_twin_or_encrypted_members_are_one_line(release, tmp_path):
    """A ZIP holding one shard twice (unzipping keeps one: the release is not what was checked) and one whose
    member carries the encryption flag (RuntimeError traceback before): one line each, exit 2."""
    import warnings

    shard = _loose(release, tmp_path / "loose")[0]
    data = shard.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate name it writes
        with zipfile.ZipFile(tmp_path / "dup.zip", "w") as zf:
            zf.writestr("s.gpkg", data)
            zf.writestr("s.gpkg", data)
    with zipfile.ZipFile(tmp_path / "enc.zip", "w") as zf:
        zf.writestr("s.gpkg", data)
    raw = bytearray((tmp_path / "enc.zip").read_bytes())
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):  # the flag in the local header (offset 6) and the central (8)
        at = raw.find(sig)
        raw[at + (6 if sig == b"PK\x03\x04" else 8)] |= 0x1
    (tmp_path / "enc.zip").write_bytes(bytes(raw))
    with zipfile.ZipFile(tmp_path / "enc.zip") as zf:
        assert zf.infolist()[0].flag_bits & 0x1
    for name, problem in (("dup.zip", "member s.gpkg is in the ZIP more than once"),
                          ("enc.zip", "member s.gpkg is encrypted")):
        res = CliRunner().invoke(app, ["inspect", str(tmp_path / name)])
        assert res.exit_code == 2 and f"{name}: {problem}" in res.output and "Traceback" not in res.output, \
            res.output


def test_the_cap_is_per_file_over_its_layers(tmp_path):
    """One GeoPackage with three polygon layers of 30, 10 and 30 features under a cap of 40: each layer is under
    the cap, the file is not; both the file's layers and its total are violations."""
    from pyproj import Geod

    folder = tmp_path / "rel"
    folder.mkdir()
    start = 1
    for layer, n in (("a", 30), ("b", 10), ("c", 30)):
        boxes = np.array([shapely.box(10 + i * 0.01, 10, 10.005 + i * 0.01, 10.005) for i in range(n)])
        areas = np.array([abs(Geod(ellps="WGS84").geometry_area_perimeter(b)[0]) for b in boxes])
        pyogrio.raw.write(folder / "three.gpkg", shapely.to_wkb(boxes),
                          [np.arange(start, start + n), np.array(["Open pit"] * n, dtype=object), areas,
                           np.full(n, 2020, np.int32)], ["index_n", "class_name", "area_m2", "year"], layer=layer,
                          driver="GPKG", geometry_type="Polygon", crs="EPSG:4326", append=layer != "a")
        start += n
    lines = [str(v) for v in inspect_release(folder, max_features=40).violations]
    assert "three.gpkg: 3 polygon layers (a, b, c); published files hold one" in lines
    assert "three.gpkg: 70 features in the file's layers together, more than the cap of 40" in lines


def test_a_release_in_subfolders_is_checked_as_deep_as_its_manifest_lists(release, tmp_path):
    """The release's ZIPs moved into zips/ with the manifest's keys moved with them, one shard taken out of a ZIP
    and one ZIP listed that is not there: keys with a '/' were taken for ZIP members and never checked (the
    release passed); now the changed ZIP, the missing ZIP and the missing shard are each a violation."""
    import json

    nested = tmp_path / "nested"
    shutil.copytree(release, nested)
    (nested / "zips").mkdir()
    manifest = json.loads((nested / "manifest.json").read_text())
    hashes = {}
    for key, digest in manifest["sha256"].items():
        top = key.split("/")[0]
        hashes[f"zips/{key}" if top.endswith(".zip") else key] = digest
    for z in sorted(nested.glob("*.zip")):
        z.rename(nested / "zips" / z.name)
    manifest["sha256"] = hashes
    (nested / "manifest.json").write_text(json.dumps(manifest))
    assert inspect_release(nested).ok  # first: moved as a whole, the release still checks out
    manifest["sha256"]["zips/gone.zip"] = "0" * 64
    (nested / "manifest.json").write_text(json.dumps(manifest))
    victim = sorted((nested / "zips").glob("*.zip"))[0]
    with zipfile.ZipFile(victim) as zf:
        kept = {i.filename: zf.read(i) for i in zf.infolist()}
    dropped = sorted(kept)[-1]
    del kept[dropped]
    with zipfile.ZipFile(victim, "w") as zf:
        for name, data in kept.items():
            zf.writestr(name, data)
    lines = [str(v) for v in inspect_release(nested).violations]
    assert f"zips/{victim.name}: SHA-256 differs from manifest.json" in lines
    assert "zips/gone.zip: listed in manifest.json but missing" in lines
    assert f"zips/{victim.name}/{dropped}: listed in manifest.json but missing" in lines
