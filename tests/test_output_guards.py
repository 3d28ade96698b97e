"""What a command writes may not clobber what a run wrote: ``report --out`` is checked against the run (its folder,
its files, its inputs), ``lulc train`` never writes its model where scenes are read, two outputs of one command
never name the same file nor lie in an output folder the command replaces (:func:`check_separate_outputs`), and
``change detect``'s folder carries the unfinished-run marker while it writes. Real files, the real CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from minescape.cli.app import app
from minescape.errors import InputError
from minescape.unfinished import MARKER
from tests.test_output_is_input import refused

runner = CliRunner()


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("MINESCAPE_PROGRESS", "0")


@pytest.fixture(scope="module")
def detect_run(small_region, tmp_path_factory) -> Path:
    """A finished ``change detect`` run folder (mask, difference, detect.json, its report)."""
    out = tmp_path_factory.mktemp("detect") / "run"
    res = runner.invoke(app, ["change", "detect", str(small_region.t1), str(small_region.t2), str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "change_mask.tif").is_file() and not (out / MARKER).exists()
    return out


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


# -------------------------------------------------------------------------------- 1. report --out vs the run

def test_report_out_whose_report_files_is_the_run_is_refused(detect_run, tmp_path):
    run = _copy(detect_run, tmp_path / "x" / "report_files")  # writing X/report_files would replace the run
    refused(["report", run, "--out", tmp_path / "x"], run, run, "--out/report_files is RUN_DIR")
    assert not (tmp_path / "x" / "report.html").exists()


def test_report_out_inside_the_run_is_refused(detect_run, tmp_path):
    demo = tmp_path / "demo"
    part = _copy(detect_run, demo / "change")  # a folder holding runs, like the demo's
    before = (part / "report.html").read_bytes()
    line = refused(["report", demo, "--out", part], demo, part, "inside RUN_DIR")
    assert str(demo) in line
    assert (part / "report.html").read_bytes() == before  # the part's own report is not replaced
    refused(["report", demo, "--out", part / "change_mask.tif"], demo, part / "change_mask.tif")


def test_report_out_that_is_an_input_of_the_run_is_refused(detect_run, tmp_path):
    import json

    run = _copy(detect_run, tmp_path / "run")
    band_folder = tmp_path / "t1_bands"  # the run read a band folder as its date 1
    band_folder.mkdir()
    (band_folder / "T50KQB_B02.tif").write_bytes(b"band")
    info = json.loads((run / "detect.json").read_text())
    info["t1"] = str(band_folder)
    (run / "detect.json").write_text(json.dumps(info))
    refused(["report", run, "--out", band_folder], band_folder, band_folder, "date 1")
    assert not (band_folder / "report.html").exists()


def test_report_default_and_its_spellings_still_work(detect_run, tmp_path):
    run = _copy(detect_run, tmp_path / "run")
    for out in (None, run, run / "." , tmp_path / "elsewhere"):
        res = runner.invoke(app, ["report", str(run), *(["--out", str(out)] if out is not None else [])])
        assert res.exit_code == 0, res.output
    assert (run / "report.html").is_file() and (tmp_path / "elsewhere" / "report.html").is_file()
    assert (run / "change_mask.tif").is_file()


# -------------------------------------------------------------------- 2. lulc train: model among the scenes

def _train_args(region, scenes: Path, model_out: Path) -> list:
    return ["lulc", "train", region.sites, model_out, "--scenes", scenes, "--dcm", region.dcm_dh,
            "--dcm-year", region.dcm_year, "--rounds", "5", "--per-class", "50"]


def test_lulc_train_model_inside_a_scenes_folder_is_refused(small_region, tmp_path):
    scenes = tmp_path / "scenes"
    shutil.copytree(small_region.scene_dir, scenes)
    model = scenes / "model.json"
    line = refused(_train_args(small_region, scenes, model), scenes, model, "--scenes", str(scenes))
    assert "scene" in line
    assert not model.exists()
    refused(_train_args(small_region, scenes, scenes / "sub" / "m.json"), scenes, scenes / "sub" / "m.json")


# ------------------------------------------------------------------- 3. two outputs of one command

def test_check_separate_outputs(tmp_path):
    from minescape.path_identity import check_separate_outputs

    (tmp_path / "errs").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "errs")
    check_separate_outputs({"--out": tmp_path / "a.json", "--errors": tmp_path / "errs", "--x": None})
    with pytest.raises(InputError, match=r"--errors is also --out \("):
        check_separate_outputs({"--out": tmp_path / "errs", "--errors": tmp_path / "link"})
    with pytest.raises(InputError, match="--out lies in --errors"):
        check_separate_outputs({"--out": tmp_path / "link" / "s.json", "--errors": tmp_path / "errs"},
                               replaced=["--errors"])
    check_separate_outputs({"--out": tmp_path / "errs" / "s.json", "--errors": tmp_path / "errs"})  # not replaced


def test_change_evaluate_out_inside_the_errors_folder_is_refused(detect_run, tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    shutil.copy(detect_run / "change_mask.tif", pred / "a.tif")
    shutil.copy(detect_run / "change_mask.tif", truth / "a.tif")
    errors = tmp_path / "errors"
    res = runner.invoke(app, ["change", "evaluate", str(pred), str(truth), "--out", str(errors / "scores.json"),
                              "--errors", str(errors)])
    assert res.exit_code == 2, res.output
    assert res.output.strip() == (f"error: {errors / 'scores.json'}: --out lies in --errors ({errors}), which "
                                  "this command replaces or prunes; choose a path outside it")
    assert not errors.exists()
    mask = detect_run / "change_mask.tif"
    res = runner.invoke(app, ["change", "evaluate", str(mask), str(mask), "--out", str(tmp_path / "e.tif"),
                              "--errors", str(tmp_path / "e.tif")])
    assert res.exit_code == 2 and "--errors is also --out" in res.output, res.output


def test_lulc_classify_run_dir_that_is_out_is_refused(small_region, tmp_path):
    out = tmp_path / "out"
    args = ["lulc", "classify", str(small_region.sites), str(out), "--dcm", str(small_region.dcm_dh),
            "--dcm-year", str(small_region.dcm_year), "--no-quicklook", "-s", str(small_region.scene_dir)]
    for run_dir, phrase in ((out, "--run-dir is also OUT"), (out / "maps", "--run-dir is also OUT/maps"),
                            (out / "maps" / "state", "--run-dir lies in OUT/maps")):
        res = runner.invoke(app, [*args, "--run-dir", str(run_dir)])
        assert res.exit_code == 2, res.output
        assert res.output.startswith(f"error: {run_dir}: {phrase}") and len(res.output.splitlines()) == 1, res.output
        assert not out.exists()


def test_lulc_train_model_that_is_the_cache_is_refused(small_region, tmp_path):
    cache = tmp_path / "cache"
    res = runner.invoke(app, [str(a) for a in _train_args(small_region, small_region.scene_dir, cache)]
                        + ["--cache", str(cache)])
    assert res.exit_code == 2, res.output
    assert res.output.startswith(f"error: {cache}: --cache is also MODEL_OUT"), res.output
    assert not cache.exists()


# ---------------------------------------------------------- 4. change detect marks its folder while it writes

def test_a_detect_that_stops_part_way_leaves_its_marker_and_is_refused(small_region, detect_run, tmp_path):
    out = _copy(detect_run, tmp_path / "det")
    (out / "difference.tif").unlink()
    (out / "difference.tif").mkdir()  # occupied by a folder: writing the difference fails part-way
    (out / "difference.tif" / "x").write_text("x")
    res = runner.invoke(app, ["change", "detect", str(small_region.t1), str(small_region.t2), str(out)])
    assert res.exit_code == 2, res.output
    assert "difference.tif" in res.output and len(res.output.splitlines()) == 1, res.output
    assert (out / MARKER).is_file()
    assert "change detect" in (out / MARKER).read_text()
    for pred in (out / "change_mask.tif", out):
        res = runner.invoke(app, ["change", "evaluate", str(pred), str(small_region.truth_change)])
        assert res.exit_code == 2, res.output
        assert res.output.startswith(f"error: {out}: the 'minescape change detect' run into this folder did not "
                                     "finish"), res.output
    res = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0 and "did not finish" in res.output, res.output
    shutil.rmtree(out / "difference.tif")
    res = runner.invoke(app, ["change", "detect", str(small_region.t1), str(small_region.t2), str(out)])
    assert res.exit_code == 0, res.output
    assert not (out / MARKER).exists()
    res = runner.invoke(app, ["change", "evaluate", str(out / "change_mask.tif"), str(small_region.truth_change)])
    assert res.exit_code == 0, res.output
