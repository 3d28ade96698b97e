"""An output path that names one of the command's own inputs is refused before any work, however it is spelled
(a symlink, a ``..``): exit 2, one line naming the output, the input's bytes unchanged (docs/bad-input.md,
"Hostile and careless use"). One mechanism: :func:`minescape.path_identity.check_not_input` /
:func:`~minescape.path_identity.check_not_within` in the commands, :class:`~minescape.path_identity.PathSet` in
``prune(protect=)`` and ``discover_scenes(exclude=)``. Real files, real symlinks, the real CLI."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from typer.testing import CliRunner

from minescape.atomic import prune
from minescape.cli.app import app
from minescape.errors import InputError
from minescape.path_identity import PathSet, check_not_input, check_not_within, is_within, same_path

runner = CliRunner()


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("MINESCAPE_PROGRESS", "0")


def digest(path: Path) -> str:
    """SHA-256 of a file, or of every file under a folder (names and bytes)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def refused(args: list, victim: Path, named: Path, *phrases: str) -> str:
    """Run the CLI with ``args``: exit 2, one ``error:`` line naming ``named`` (the output as given) and saying
    each phrase, ``victim`` (an input, there with content first) unchanged. Returns the line."""
    assert victim.exists() and (any(victim.rglob("*")) if victim.is_dir() else victim.stat().st_size > 0)
    before = digest(victim)
    res = runner.invoke(app, [str(a) for a in args])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith(f"error: {named}: "), res.output
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    assert digest(victim) == before
    return lines[0]


def write_mask(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype="uint8", crs="EPSG:32650", transform=from_origin(500000, 7400000, 10, 10)) as dst:
        dst.write(data, 1)
    return path


# ------------------------------------------------------------------------------------------- the helpers

def test_same_path_by_identity_not_spelling(tmp_path):
    a = tmp_path / "a.tif"
    a.write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.tif").symlink_to(a)
    os.link(a, tmp_path / "hard.tif")
    assert same_path(tmp_path / "link.tif", a) and same_path(tmp_path / "sub" / ".." / "a.tif", a)
    assert same_path(tmp_path / "hard.tif", a)
    assert not same_path(tmp_path / "b.tif", a) and not same_path(tmp_path / "sub", a)
    (tmp_path / "dirlink").symlink_to(tmp_path / "sub")  # outputs not written yet: by their real paths
    assert same_path(tmp_path / "dirlink" / "new.tif", tmp_path / "sub" / "new.tif")
    assert not same_path(tmp_path / "dirlink" / "new.tif", tmp_path / "sub" / "other.tif")
    assert is_within(a, tmp_path / "dirlink" / "..") and is_within(tmp_path / "dirlink" / "x", tmp_path / "sub")
    assert not is_within(tmp_path / "sub", tmp_path / "sub" / "x")
    assert PathSet([a, tmp_path / "sub"]).match(tmp_path / "link.tif") == a


def test_check_messages_name_the_output_and_the_input(tmp_path):
    image = tmp_path / "image.tif"
    image.write_bytes(b"x")
    (tmp_path / "link.tif").symlink_to(image)
    with pytest.raises(InputError) as err:
        check_not_input(tmp_path / "link.tif", {"the input IMAGE": image, "a --labels input": None}, what="OUT")
    assert str(err.value) == (f"{tmp_path / 'link.tif'}: OUT would overwrite the input IMAGE ({image}, by another "
                              "name); choose another path")
    check_not_input(tmp_path / "out.tif", {"the input IMAGE": image, "inputs": [tmp_path / "link.tif"]}, what="OUT")
    with pytest.raises(InputError) as err:
        check_not_within(tmp_path, {"the input IMAGE": image}, what="OUT")
    assert str(err.value) == (f"{tmp_path}: OUT holds the input IMAGE ({image}), which writing this folder would "
                              "replace or delete; choose another folder")


def test_prune_protects_inputs_however_spelled(tmp_path):
    folder = tmp_path / "maps"
    for name in ("a.tif", "b.tif", "c.tif"):
        write_mask(folder / name, np.zeros((3, 4), np.uint8))
    (tmp_path / "input-link.tif").symlink_to(folder / "a.tif")
    removed = prune(folder, "*.tif", keep=[tmp_path / "maps" / ".." / "maps" / "c.tif"],
                    protect=[tmp_path / "input-link.tif"])
    assert removed == [folder / "b.tif"] and sorted(p.name for p in folder.iterdir()) == ["a.tif", "c.tif"]
    (tmp_path / "maplink").symlink_to(folder)  # a protected folder spelled through a symlink
    assert prune(folder, "*.tif", keep=[], protect=[tmp_path / "maplink"]) == []
    assert prune(folder, "*.tif", keep=[], protect=[folder / ".." / "maps"]) == []
    assert len(list(folder.iterdir())) == 2


# ------------------------------------------------------------------------------------------- map (U-Net)

@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory) -> Path:
    """A 120 x 120 px scene (image, label products) and a U-Net checkpoint trained for one step."""
    from minescape.legend import SINOLC1
    from minescape.maps.synthetic_hr import HRConfig, make_scene, write_scene
    from minescape.maps.train import TrainConfig, save_checkpoint, train_unet
    from minescape.maps.weak import agreement_labels

    root = tmp_path_factory.mktemp("hr")
    scene = make_scene(HRConfig(seed=5, width=120, height=120))
    write_scene(scene, root)
    labels = agreement_labels([scene.label_10m], scene.image.grid, SINOLC1)
    net = train_unet(scene.image.data, labels, SINOLC1, config=TrainConfig(epochs=1, steps_per_epoch=1, batch=2,
                                                                           patch=32),
                     band_names=scene.image.band_names)
    save_checkpoint(net, root / "unet.pt")
    return root


@pytest.fixture
def hr(hr_dir, tmp_path) -> Path:
    """A copy of the scene and checkpoint of this test (a failing guard must not spoil the others')."""
    for f in hr_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def test_map_predict_out_is_its_image_or_model(hr):
    image, model = hr / "image.tif", hr / "unet.pt"
    res = runner.invoke(app, ["map", "predict", str(image), str(model), str(hr / "map.tif"), "--tile", "64",
                              "--window", "32", "--device", "cpu"])
    assert res.exit_code == 0 and (hr / "map.tif").is_file(), res.output  # OUT is written when it may be
    refused(["map", "predict", image, model, image, "--device", "cpu"], image, image,
            "OUT would overwrite the input IMAGE; choose another path")
    (hr / "img-link.tif").symlink_to(image)
    refused(["map", "predict", image, model, hr / "img-link.tif"], image, hr / "img-link.tif",
            f"the input IMAGE ({image}, by another name)")
    (hr / "sub").mkdir()
    refused(["map", "predict", image, model, hr / "sub" / ".." / "unet.pt"], model, hr / "sub" / ".." / "unet.pt",
            "the input MODEL")


def test_map_train_out_is_its_labels_or_image(hr):
    image, labels = hr / "image.tif", hr / "label_10m.tif"
    refused(["map", "train", image, labels, "--labels", labels, "--epochs", "1", "--steps", "1"], labels, labels,
            "OUT would overwrite the --labels input")
    (hr / "img-link.tif").symlink_to(image)
    refused(["map", "train", image, hr / "img-link.tif", "--labels", labels], image, hr / "img-link.tif",
            "the input IMAGE")


def test_map_products_admin_is_its_own_index(hr):
    import geopandas as gpd
    import shapely

    from minescape.geo.vector import write_gpkg

    out = hr / "products"
    admin = write_gpkg(gpd.GeoDataFrame({"region": ["R"], "province": ["P"], "city": ["C"]},
                                        geometry=[shapely.box(400000, 3499880, 400120, 3500000)], crs="EPSG:32650"),
                       out / "index.gpkg", layer="tiles")
    refused(["map", "products", hr / "truth.tif", admin, out], admin, out / "index.gpkg",
            "OUT/index.gpkg would overwrite the input ADMIN")


# ------------------------------------------------------------------------------------------- lulc

def test_lulc_train_model_out_is_its_labels(small_region, tmp_path):
    truth = tmp_path / "truth" / "lulc.tif"
    truth.parent.mkdir()
    shutil.copy(small_region.truth_lulc, truth)
    sites = Path(shutil.copy(small_region.sites, tmp_path / "sites.gpkg"))
    common = ["--scenes", small_region.scene_dir, "--dcm", small_region.dcm_dh, "--dcm-year", small_region.dcm_year]
    refused(["lulc", "train", sites, truth, *common, "--labels", truth], truth, truth,
            "MODEL_OUT would overwrite the --labels input")
    (tmp_path / "sites-link").symlink_to(tmp_path)
    refused(["lulc", "train", sites, tmp_path / "sites-link" / "sites.gpkg", *common], sites,
            tmp_path / "sites-link" / "sites.gpkg", "the input SITES")


def test_lulc_classify_sites_json_is_its_sites(small_region, tmp_path):
    """A GeoJSON of sites named sites.json in OUT would become the run's summary."""
    import geopandas as gpd

    sites = tmp_path / "sites.json"
    gpd.read_file(small_region.sites).to_file(sites, driver="GeoJSON")
    refused(["lulc", "classify", sites, tmp_path, "--scenes", small_region.scene_dir, "--dcm",
             small_region.dcm_dh, "--dcm-year", small_region.dcm_year], sites, tmp_path / "sites.json",
            "OUT/sites.json would overwrite the input SITES")


@pytest.mark.parametrize("spelling", ["symlink", "dotdot"])
def test_discover_scenes_skips_outputs_of_an_out_folder_spelled_otherwise(small_region, tmp_path, spelling):
    """OUT a symlink to the scene folder (or ``scenes/../scenes``): the second run's discovery skips the first
    run's outputs (its sites.json, a list, is no STAC file: read as one, the run stopped)."""
    from minescape.imagery.local_scenes import discover_scenes
    from minescape.lulc.pipeline import run_outputs

    scenes = tmp_path / "scenes"
    scenes.mkdir()
    shutil.copy(small_region.t1, scenes)
    first = discover_scenes([scenes])
    assert len(first) == 1
    if spelling == "symlink":
        (tmp_path / "out").symlink_to(scenes)
        out = tmp_path / "out"
    else:
        (tmp_path / "other").mkdir()
        out = tmp_path / "other" / ".." / "scenes"
    (out / "sites.json").write_text("[]")  # what a first run leaves in OUT
    write_mask(out / "maps" / "S01.tif", np.ones((4, 5), np.uint8))
    with pytest.raises(InputError, match="sites.json"):  # what is there to skip would be read
        discover_scenes([scenes])
    again = discover_scenes([scenes], exclude=run_outputs(out))
    assert [r.source for r in again] == [r.source for r in first]


# ------------------------------------------------------------------------------------------- change

@pytest.fixture
def masks(tmp_path) -> Path:
    """preds/ and truth/ folders of two 64 x 64 change masks each (predictions with false alarms)."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        truth = (rng.random((64, 64)) > 0.8).astype("uint8")
        pred = truth.copy()
        pred[:8] = 1 - pred[:8]
        write_mask(tmp_path / "preds" / f"{name}.tif", pred)
        write_mask(tmp_path / "truth" / f"{name}.tif", truth)
    return tmp_path


def test_change_evaluate_errors_is_the_predictions_by_another_name(masks):
    preds, truth = masks / "preds", masks / "truth"
    res = runner.invoke(app, ["change", "evaluate", str(preds), str(truth), "--errors", str(masks / "errs")])
    assert res.exit_code == 0 and (masks / "errs" / "a.tif").is_file(), res.output  # maps are written
    (masks / "predlink").symlink_to(preds)
    refused(["change", "evaluate", preds, truth, "--errors", masks / "predlink"], preds, masks / "predlink",
            "--errors would overwrite the masks being evaluated in PRED", f"({preds}, by another name)")
    refused(["change", "evaluate", preds, truth, "--errors", preds / ".." / "preds"], preds, preds / ".." / "preds",
            "--errors would overwrite the masks being evaluated in PRED")
    refused(["change", "evaluate", preds, truth, "--errors", masks / "errs" / ".." / "truth"], truth,
            masks / "errs" / ".." / "truth", "the masks being evaluated in TRUTH")


def test_change_evaluate_out_is_a_mask(masks):
    pred = masks / "preds" / "a.tif"
    refused(["change", "evaluate", pred, masks / "truth" / "a.tif", "--out", pred], pred, pred,
            "--out would overwrite the input PRED")
    refused(["change", "evaluate", masks / "preds", masks / "truth", "--out", masks / "truth" / "b.tif"],
            masks / "truth", masks / "truth" / "b.tif", "a mask of TRUTH")


def test_change_refine_burn_out_is_its_mask(masks):
    mask = masks / "preds" / "a.tif"
    res = runner.invoke(app, ["change", "refine", "export", str(mask), str(masks / "edited.gpkg")])
    assert res.exit_code == 0 and "candidate polygons" in res.output, res.output  # burning it back would run
    refused(["change", "refine", "export", mask, mask], mask, mask, "OUT would overwrite the input MASK")
    (masks / "mask-link.tif").symlink_to(mask)
    refused(["change", "refine", "burn", masks / "edited.gpkg", mask, masks / "mask-link.tif"], mask,
            masks / "mask-link.tif", "OUT would overwrite the input MASK")


def test_change_patches_out_folder_holding_the_pair(small_region, tmp_path):
    """OUT is replaced whole: the folder of the pair and its mask would be deleted with it."""
    data = tmp_path / "data"
    data.mkdir()
    t1, t2 = (Path(shutil.copy(p, data / n)) for p, n in ((small_region.t1, "t1.tif"), (small_region.t2, "t2.tif")))
    mask = Path(shutil.copy(small_region.truth_change, data / "mask.tif"))
    refused(["change", "patches", t1, t2, mask, data, "--size", "64"], data, data,
            f"OUT holds the input T1 ({t1}), which writing this folder would replace or delete")
    (tmp_path / "data-link").symlink_to(data)
    refused(["change", "patches", t1, t2, mask, tmp_path / "data-link"], data, tmp_path / "data-link", "the input T1")


def test_publish_into_the_release_holding_its_maps(tmp_path):
    """An earlier release folder (replaced whole by a new one) that holds the class maps published."""
    release = tmp_path / "release"
    maps = release / "maps"
    data = np.ones((20, 30), np.uint8)
    data[5:10, 5:20] = 2
    write_mask(maps / "S01.tif", data)
    with rasterio.open(maps / "S01.tif", "r+") as dst:  # a publishable class map: its site and year
        dst.update_tags(SITE_ID="S01", YEAR="2019")
    (release / "manifest.json").write_text("{}")
    refused(["publish", maps, release], maps, release, "OUT holds the input MAPS_DIR")


def test_the_library_calls_refuse_too(small_region, tmp_path):
    """From Python (a notebook), publish() and patches_from_files() check their own OUT: the guard is theirs."""
    from minescape.change.patches import patches_from_files
    from minescape.errors import InputError
    from minescape.publish.release import publish

    data = tmp_path / "data"
    data.mkdir()
    t1, t2 = (Path(shutil.copy(p, data / n)) for p, n in ((small_region.t1, "t1.tif"), (small_region.t2, "t2.tif")))
    mask = Path(shutil.copy(small_region.truth_change, data / "mask.tif"))
    before = {p: digest(p) for p in (t1, t2, mask)}
    with pytest.raises(InputError, match="OUT holds the input T1"):
        patches_from_files(t1, t2, mask, data)
    maps = data / "maps"
    write_mask(maps / "S01.tif", np.ones((20, 30), np.uint8))
    with rasterio.open(maps / "S01.tif", "r+") as dst:
        dst.update_tags(SITE_ID="S01", YEAR="2019")
    with pytest.raises(InputError, match="OUT holds the input MAPS_DIR"):
        publish(maps, data, progress=False)
    assert {p: digest(p) for p in before} == before and (maps / "S01.tif").is_file()


# ------------------------------------------------------------------------------------------- every other command

CASES = {  # command line, the input that would be overwritten, what the line says (it names the output given)
    "change detect": (["change", "detect", "{out}/change_mask.tif", "b.tif", "{out}"], "{out}/change_mask.tif",
                      "OUT/change_mask.tif would overwrite the input T1"),
    "change predict": (["change", "predict", "m.pt", "a.tif", "{out}/change_probability.tif", "{out}"],
                       "{out}/change_probability.tif", "OUT/change_probability.tif would overwrite the input T2"),
    "change export": (["change", "export", "m.pt", "--out", "{out}/../m.pt"], "m.pt",
                      "--out would overwrite the input MODEL"),
    "change train": (["change", "train", "{out}", "--t1", "a.tif", "--t2", "b.tif", "--truth", "{out}/model.pt"],
                     "{out}/model.pt", "OUT/model.pt would overwrite the --truth raster"),
    "map sample": (["map", "sample", "a.tif", "pts", "--reference", "pts.gpkg"], "pts.gpkg",
                   "OUT (.gpkg) would overwrite the --reference map"),
    "map validate": (["map", "validate", "a.tif", "{out}/estimates.csv", "{out}"], "{out}/estimates.csv",
                     "OUT/estimates.csv would overwrite the input POINTS"),
    "lulc evaluate": (["lulc", "evaluate", "a.tif", "{out}/metrics.json", "--out", "{out}"], "{out}/metrics.json",
                      "--out/metrics.json would overwrite the input REFERENCE"),
    "lulc scenes": (["lulc", "scenes", "sites.gpkg", "sites.gpkg", "--scenes", "a.tif", "--dcm", "b.tif"],
                    "sites.gpkg", "OUT would overwrite the input SITES"),
}


@pytest.mark.parametrize("command", sorted(CASES))
def test_every_command_refuses_an_output_that_is_an_input(command, tmp_path, monkeypatch):
    """The input exists with content; the command stops before reading anything, its bytes unchanged."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    for name in ("a.tif", "b.tif", "out/change_mask.tif", "out/change_probability.tif", "out/model.pt",
                 "out/estimates.csv", "out/metrics.json", "m.pt", "pts.gpkg", "sites.gpkg"):
        write_mask(tmp_path / name, np.arange(20, dtype=np.uint8).reshape(4, 5))  # bytes to keep, whatever name
    args, victim, phrase = CASES[command]
    args = [a.format(out="out") for a in args]
    named = "out/../m.pt" if command == "change export" else victim.format(out="out")
    refused(args, tmp_path / victim.format(out="out"), Path(named), phrase)
