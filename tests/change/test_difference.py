"""Index differencing on the synthetic pair: F1 against the known change, streamed == whole-array, outputs."""

import hashlib

import numpy as np
import pytest
import rasterio

from minescape.change.difference import (
    DetectOptions,
    change_score,
    detect,
    detect_files,
    score_histogram,
    threshold_from_histogram,
)
from minescape.change.metrics import evaluate_files
from minescape.change.pairs import open_pair, read_on_grid, read_pair
from minescape.errors import ConfigError, NoOverlapError
from minescape.geo.raster import Raster, read_raster, write_raster
from minescape.legend import CHANGE


@pytest.fixture(scope="module")
def pair_arrays(small_region):
    pair = open_pair(small_region.t1, small_region.t2)
    t1, t2 = read_pair(pair)
    truth = read_on_grid(small_region.truth_change, pair.grid).data[0]
    return t1, t2, truth


def test_default_method_reaches_f1_085_on_the_synthetic_pair(small_region, tmp_path, capfd):
    capfd.readouterr()
    res = detect_files(small_region.t1, small_region.t2, tmp_path / "det", window=96)
    assert capfd.readouterr().err == ""  # progress=False (the library default): not even a blank line
    scores = evaluate_files(res.mask, small_region.truth_change)
    print(f"synthetic pair, SAVI/Otsu defaults: F1 {scores.f1:.3f} P {scores.precision:.3f} R {scores.recall:.3f}")
    assert scores.f1 >= 0.85
    assert res.stats["loss_pixels"] + res.stats["gain_pixels"] == res.stats["changed_pixels"]
    assert res.stats["loss_pixels"] > 0 and res.stats["gain_pixels"] > 0  # mine expansion and revegetation


@pytest.mark.parametrize("options", [
    DetectOptions(),
    DetectOptions(method="NDVI", direction="loss", opening=2, closing=1, min_area_m2=800),
    DetectOptions(method="CVA", threshold="percentile", value=97, opening=0, closing=2, min_area_m2=2000),
    DetectOptions(method="BSI", direction="gain", threshold="fixed", value=0.05, opening=1, closing=0,
                  min_area_m2=300),
])
def test_streamed_mask_equals_the_whole_array_mask(small_region, pair_arrays, tmp_path, options):
    t1, t2, _ = pair_arrays
    whole = detect(t1, t2, options=options)
    res = detect_files(small_region.t1, small_region.t2, tmp_path / "s", options=options, window=40)
    streamed = read_raster(res.mask)
    assert np.array_equal(streamed.data[0], whole.mask.data[0])
    assert res.stats["threshold"] == whole.threshold
    assert res.stats["changed_pixels"] == whole.stats["changed_pixels"]
    diff = read_raster(res.difference).data[0]
    assert np.array_equal(diff, whole.difference.data[0], equal_nan=True)


def test_output_files_legend_and_reproducible_bytes(small_region, tmp_path):
    a = detect_files(small_region.t1, small_region.t2, tmp_path / "a", options=DetectOptions(min_area_m2=500))
    b = detect_files(small_region.t1, small_region.t2, tmp_path / "b", options=DetectOptions(min_area_m2=500))
    for pa, pb in ((a.mask, b.mask), (a.difference, b.difference)):
        assert hashlib.sha256(pa.read_bytes()).digest() == hashlib.sha256(pb.read_bytes()).digest()
    # the bytes follow the input (a constant writer would pass the loop above): another option, another mask
    c = detect_files(small_region.t1, small_region.t2, tmp_path / "c", options=DetectOptions(min_area_m2=50_000))
    assert a.stats["changed_pixels"] > c.stats["changed_pixels"] >= 0
    assert c.mask.read_bytes() != a.mask.read_bytes()
    with rasterio.open(a.mask) as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 255 and src.crs.to_epsg() == 32750
        cmap = src.colormap(1)
        assert cmap[1][:3] == CHANGE.by_code(1).color and cmap[0][:3] == CHANGE.by_code(0).color
        values = set(np.unique(src.read(1)).tolist())
    assert values == {0, 1, 255}
    with rasterio.open(a.difference) as src:
        assert src.dtypes[0] == "float32" and src.descriptions == ("dSAVI",)
    # the minimum area holds: every 8-connected change component has >= 5 pixels (500 m² at 10 m)
    from scipy import ndimage

    m = read_raster(a.mask).data[0] == 1
    labels, n = ndimage.label(m, structure=np.ones((3, 3)))
    assert n > 0 and np.bincount(labels.ravel())[1:].min() >= 5


def test_signed_directions_are_kept_apart(pair_arrays):
    t1, t2, _ = pair_arrays
    none = DetectOptions(opening=0, closing=0)
    loss = detect(t1, t2, options=DetectOptions(direction="loss", opening=0, closing=0))
    gain = detect(t1, t2, options=DetectOptions(direction="gain", opening=0, closing=0))
    d = detect(t1, t2, options=none).difference.data[0]
    lm, gm = loss.mask.data[0] == 1, gain.mask.data[0] == 1
    assert lm.any() and gm.any() and not (lm & gm).any()
    assert (d[lm] < 0).all() and (d[gm] > 0).all()


def test_histogram_otsu_and_percentile_agree_with_the_raw_values(pair_arrays):
    from skimage.filters import threshold_otsu

    t1, t2, _ = pair_arrays
    opts = DetectOptions()
    d = detect(t1, t2, options=opts).difference.data[0]
    score = change_score(d, options=opts)
    counts = score_histogram(score, top=3.0)
    ok = np.isfinite(score)
    otsu = threshold_from_histogram(counts, top=3.0, options=opts)
    assert abs(otsu - threshold_otsu(score[ok], nbins=4096)) < 0.01
    p90 = threshold_from_histogram(counts, top=3.0, options=DetectOptions(threshold="percentile", value=90))
    assert abs(p90 - np.percentile(score[ok], 90)) <= 3.0 / 4096 + 1e-6
    assert (score[ok] > p90).mean() == pytest.approx(0.10, abs=0.01)


def test_choices_are_validated_with_the_valid_values():
    with pytest.raises(ConfigError, match="choose one of: SAVI, NDVI, NDWI, BSI, MNDWI, NDBI, CVA"):
        DetectOptions(method="EVI")
    with pytest.raises(ConfigError, match="no sign"):
        DetectOptions(method="CVA", direction="loss")
    with pytest.raises(ConfigError, match="percentile"):
        DetectOptions(threshold="percentile", value=150)
    with pytest.raises(ConfigError, match="fixed threshold needs a value"):
        DetectOptions(threshold="fixed")


def test_no_overlap_leaves_nothing_behind(small_region, tmp_path):
    from affine import Affine

    src = read_raster(small_region.t2)
    far = Raster(src.data, src.crs, src.transform @ Affine.translation(0, 9000), 0, src.band_names)
    path = write_raster(far, tmp_path / "S2A_MSIL2A_20240812T022551_N0510_R046_T50KQB_far.tif")
    out = tmp_path / "out"
    with pytest.raises(NoOverlapError, match="far.tif"):
        detect_files(small_region.t1, path, out)
    assert not out.exists() or not any(out.iterdir())
