"""``minescape map ...`` through the CLI runner on real temporary files."""

import pandas as pd
import shapely
from typer.testing import CliRunner

from minescape.cli.app import app
from minescape.geo.raster import write_raster
from minescape.maps.products import grid_units

runner = CliRunner()


def test_map_commands_end_to_end(hr_scene, hr_files, tmp_path):
    model = tmp_path / "unet.pt"
    res = runner.invoke(app, ["map", "train", str(hr_files["image"]), str(model),
                              "--labels", str(hr_files["label_10m"]),
                              "--labels", str(hr_files["label_30m"]), "--epochs", "1", "--steps", "3"])
    assert res.exit_code == 0, res.output
    assert "labels agree on" in res.output and model.exists()
    out_map = tmp_path / "map.tif"
    res = runner.invoke(app, ["map", "predict", str(hr_files["image"]), str(model), str(out_map), "--tile", "100",
                              "--window", "64"])
    assert res.exit_code == 0, res.output
    assert "6 tiles" in res.output and out_map.exists()

    units = grid_units(hr_scene.image.bounds, nx=2, ny=2, crs=hr_scene.image.crs, regions=1)
    units.to_file(tmp_path / "admin.gpkg")
    res = runner.invoke(app, ["map", "products", str(hr_files["truth"]), str(tmp_path / "admin.gpkg"),
                              str(tmp_path / "prod")])
    assert res.exit_code == 0, res.output
    assert "wrote 4 tiles, 2 province ZIPs, 1 versions" in res.output

    res = runner.invoke(app, ["map", "sample", str(out_map), str(tmp_path / "pts"), "--n", "80", "--min-per-class",
                              "5", "--reference", str(hr_files["truth"])])
    assert res.exit_code == 0, res.output
    # a "reference table" of areas: the truth's areas per unit; the mapped areas come from products on the map
    runner.invoke(app, ["map", "products", str(out_map), str(tmp_path / "admin.gpkg"), str(tmp_path / "prodmap")])
    res = runner.invoke(app, ["map", "validate", str(out_map), str(tmp_path / "pts.csv"), str(tmp_path / "val"),
                              "--admin", str(tmp_path / "admin.gpkg"),
                              "--mapped-areas", str(tmp_path / "prodmap" / "class_areas.csv"),
                              "--reference-areas", str(tmp_path / "prod" / "class_areas.csv")])
    assert res.exit_code == 0, res.output
    assert "area-weighted OA" in res.output
    assert (tmp_path / "val" / "oa_per_unit.png").stat().st_size > 1000
    cmp = pd.read_csv(tmp_path / "val" / "area_comparison.csv")
    assert set(cmp.columns) == {"unit", "class", "mapped", "reference", "difference", "relative_difference"}
    assert len(cmp) > 0
    # again into the folder without --admin and the area tables: their outputs (of the earlier run) are removed
    res = runner.invoke(app, ["map", "validate", str(out_map), str(tmp_path / "pts.csv"), str(tmp_path / "val")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "val" / "validation.json").is_file()
    assert not [p.name for p in (tmp_path / "val").iterdir() if p.name.startswith(("oa_per_unit", "area_comp"))]
    # one of the pair, or an empty table: one line, exit 2, before anything is written
    (tmp_path / "empty.csv").write_text("")
    for extra, problem in ((["--mapped-areas", str(tmp_path / "prodmap" / "class_areas.csv")],
                            "give both --mapped-areas and --reference-areas"),
                           (["--mapped-areas", str(tmp_path / "empty.csv"), "--reference-areas",
                             str(tmp_path / "prod" / "class_areas.csv")], "empty.csv: mapped area table is empty")):
        res = runner.invoke(app, ["map", "validate", str(out_map), str(tmp_path / "pts.csv"), str(tmp_path / "v2"),
                                  *extra])
        assert res.exit_code == 2 and problem in res.output and "Traceback" not in res.output, res.output
        assert not (tmp_path / "v2").exists()


def test_bad_input_is_one_line(hr_scene, hr_files, tmp_path):
    three = write_raster(hr_scene.image.select(["blue", "green", "red"]), tmp_path / "rgb.tif")
    model = tmp_path / "unet.pt"
    runner.invoke(app, ["map", "train", str(hr_files["image"]), str(model), "--labels", str(hr_files["label_10m"]),
                        "--epochs", "1", "--steps", "2", "--no-self-train"])
    res = runner.invoke(app, ["map", "predict", str(three), str(model), str(tmp_path / "x.tif")])
    assert res.exit_code == 2 and "expects 4 bands but the imagery has 3" in res.output
    assert "Traceback" not in res.output

    units = grid_units(hr_scene.image.bounds, nx=2, ny=1, crs=hr_scene.image.crs, regions=1)
    units.loc[len(units)] = {"region": "R", "province": "P", "city": "Far", "geometry": shapely.box(0, 0, 1, 1)}
    units.to_file(tmp_path / "admin.gpkg")
    res = runner.invoke(app, ["map", "products", str(hr_files["truth"]), str(tmp_path / "admin.gpkg"),
                              str(tmp_path / "prod")])
    assert res.exit_code == 3, res.output
    assert "R_P_Far" in res.output and "outside the map" in res.output and "1 of 3 units failed" in res.output
    assert len(list((tmp_path / "prod" / "tiles").iterdir())) == 2

    res = runner.invoke(app, ["map", "sample", str(hr_files["truth"]), str(tmp_path / "s"), "--allocation", "nope"])
    assert res.exit_code == 2 and "choose one of: proportional, equal, olofsson" in res.output
