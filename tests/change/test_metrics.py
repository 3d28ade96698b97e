"""Change metrics: hand-checked values, pooling, files in any encoding, folders, bad input."""

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from minescape.change.metrics import change_scores, evaluate_files, evaluate_paths, pool
from minescape.errors import InputError, NoOverlapError
from minescape.geo.raster import Raster, write_raster


def test_scores_by_hand():
    truth = np.array([1, 1, 1, 0, 0, 0, 0, 0, 255, 1])
    pred = np.array([1, 1, 0, 1, 0, 0, 0, 0, 1, 255])
    s = change_scores(truth, pred)
    # tp 2, fn 1, fp 1, tn 4 (nodata in either ignored)
    assert s.to_dict()["tp"] == 2 and s.n == 8
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 / 3) and s.iou == pytest.approx(0.5)
    assert s.overall_accuracy == pytest.approx(6 / 8)
    pe = (3 * 3 + 5 * 5) / 64
    assert s.kappa == pytest.approx((6 / 8 - pe) / (1 - pe))


def test_pooled_sums_matrices():
    a = change_scores(np.array([1, 1, 0, 0]), np.array([1, 1, 0, 0]))  # F1 1
    b = change_scores(np.array([1] * 2 + [0] * 100), np.array([0, 0] + [1] * 2 + [0] * 98))  # F1 0
    ev = pool({"a": a, "b": b})
    assert ev.mean_f1 == pytest.approx(0.5)
    assert ev.pooled.f1 == pytest.approx(2 * 2 / (2 * 2 + 2 + 2))  # tp 2, fp 2, fn 2


def _write(path, arr, *, crs=True, nodata=None):
    if crs:
        return write_raster(Raster(arr[None].astype(np.uint8), CRS.from_epsg(32633),
                                   Affine(10, 0, 500000, 0, -10, 4100000), nodata), path)
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1,
                       dtype="uint8") as dst:
        dst.write(arr[None].astype(np.uint8))
    return path


def test_files_in_different_encodings(tmp_path):
    rng = np.random.default_rng(0)
    truth01 = (rng.random((37, 41)) < 0.2).astype(np.uint8)
    pred01 = truth01.copy()
    pred01[:5] = 1 - pred01[:5]
    expected = change_scores(truth01, pred01)
    t = _write(tmp_path / "truth-cm.tif", truth01 + 1, crs=False)  # OSCD: 1/2, no CRS
    p = _write(tmp_path / "pred.tif", pred01 * 255, crs=False)  # 0/255
    s = evaluate_files(p, t)
    assert s.matrix.tolist() == expected.matrix.tolist()
    s = evaluate_files(p, t, pred_encoding="0-255", truth_encoding="1-2")
    assert s.f1 == pytest.approx(expected.f1)
    with pytest.raises(InputError, match=r"truth-cm.tif: unexpected label values \[2\]"):
        evaluate_files(p, t, truth_encoding="0-1")


def test_prediction_is_read_onto_the_truth_grid(tmp_path):
    rng = np.random.default_rng(1)
    truth = (rng.random((40, 60)) < 0.3).astype(np.uint8)
    t = _write(tmp_path / "t.tif", truth, nodata=255)
    # the prediction covers only part of the truth, offset by whole pixels: outside is ignored
    pred = Raster(truth[None, 10:30, 5:45], CRS.from_epsg(32633), Affine(10, 0, 500050, 0, -10, 4099900), 255)
    p = write_raster(pred, tmp_path / "p.tif")
    s = evaluate_files(p, t)
    assert s.f1 == 1.0 and s.n == 20 * 40
    far = write_raster(Raster(pred.data, pred.crs, Affine(10, 0, 900000, 0, -10, 4099900), 255), tmp_path / "far.tif")
    with pytest.raises(NoOverlapError, match="far.tif"):
        evaluate_files(far, t)


def test_folders_per_image_and_pooled(tmp_path):
    rng = np.random.default_rng(2)
    for name in ("a", "b", "c"):
        truth = (rng.random((20, 30)) < 0.3).astype(np.uint8)
        pred = truth.copy()
        pred[:3] = 0
        _write((tmp_path / "truth").joinpath(f"{name}.tif"), truth)
        _write((tmp_path / "pred").joinpath(f"{name}.tif"), pred)
    ev = evaluate_paths(tmp_path / "pred", tmp_path / "truth")
    assert list(ev.per_image) == ["a", "b", "c"]
    assert ev.pooled.matrix.tolist() == sum(s.matrix for s in ev.per_image.values()).tolist()
    assert 0.7 < ev.pooled.f1 < 1.0 and ev.pooled.precision == 1.0
    (tmp_path / "pred" / "c.tif").unlink()
    with pytest.raises(InputError, match="1 truth files have no prediction"):
        evaluate_paths(tmp_path / "pred", tmp_path / "truth")


def test_error_codes_of_every_case():
    from minescape.change.metrics import error_codes

    truth = np.array([0, 0, 1, 1, 255, 0, 1])
    pred = np.array([0, 1, 1, 0, 1, 255, 255])
    assert error_codes(truth, pred).tolist() == [0, 2, 1, 3, 255, 255, 255]


def test_error_maps_count_what_the_scores_count(tmp_path):
    """``--errors``: a GeoTIFF with the change_errors colour table whose counts are the confusion matrix, on the
    prediction's georeferencing where the truth has none (OSCD's labels); one map per image for folders."""
    from typer.testing import CliRunner

    from minescape.cli.app import app
    from minescape.legend import CHANGE_ERRORS

    rng = np.random.default_rng(3)
    truth01 = (rng.random((37, 41)) < 0.2).astype(np.uint8)
    pred01 = truth01.copy()
    pred01[:5] = 1 - pred01[:5]  # false alarms and missed change
    pred01[30:, :4] = 255  # nodata in the prediction
    (tmp_path / "truth").mkdir()
    t = _write(tmp_path / "truth" / "x.tif", truth01 + 1, crs=False)  # OSCD: 1/2, no CRS
    p = _write(tmp_path / "pred" / "x.tif", pred01, nodata=255)
    s = evaluate_files(p, t, errors=tmp_path / "errors.tif")
    (tn, fp), (fn, tp) = s.matrix.tolist()
    assert min(tn, fp, fn, tp) > 0  # every case is there to be counted
    with rasterio.open(tmp_path / "errors.tif") as src:
        codes = src.read(1)
        assert src.crs == CRS.from_epsg(32633) and src.transform == Affine(10, 0, 500000, 0, -10, 4100000)
        assert src.nodata == 255 and src.colormap(1)[2][:3] == CHANGE_ERRORS.by_name("False alarm").color
    assert [int((codes == c).sum()) for c in (0, 1, 2, 3, 255)] == [tn, tp, fp, fn, 7 * 4]
    style = (tmp_path / "errors.qml").read_text()  # QGIS's default style: the class names, not the codes
    assert 'value="2" color="#d7191c" alpha="255" label="False alarm"' in style and 'label="Missed change"' in style
    res = CliRunner().invoke(app, ["change", "evaluate", str(tmp_path / "pred"), str(tmp_path / "truth"), "--errors",
                                   str(tmp_path / "maps")])
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "maps" / "x.tif") as src:
        assert np.array_equal(src.read(1), codes)
    assert f"error maps: {tmp_path / 'maps'}/<name>.tif" in res.output
    res = CliRunner().invoke(app, ["change", "evaluate", str(p), str(t), "--errors", str(tmp_path / "errmap")])
    assert res.exit_code == 0 and (tmp_path / "errmap").is_file()  # two files: one map, whatever its name
    assert f"error maps: {tmp_path / 'errmap'}\n" in res.output  # (it said errmap/<name>.tif, by the suffix)
    (tmp_path / "maps" / "gone.tif").write_bytes(b"an error map of an image evaluated before")
    (tmp_path / "maps" / "gone.qml").write_text("its style")
    evaluate_paths(tmp_path / "pred", tmp_path / "truth", errors=tmp_path / "maps")
    assert sorted(f.name for f in (tmp_path / "maps").iterdir()) == ["x.qml", "x.tif"]  # the run owns its folder
    for target in (tmp_path / "pred", tmp_path / "truth"):  # never over the masks themselves
        res = CliRunner().invoke(app, ["change", "evaluate", str(tmp_path / "pred"), str(tmp_path / "truth"),
                                       "--errors", str(target)])
        assert res.exit_code == 2 and "would overwrite the masks being evaluated" in res.output
    with rasterio.open(p) as src:
        assert np.array_equal(src.read(1), pred01)
