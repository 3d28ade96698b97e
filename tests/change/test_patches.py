"""Patch datasets: layout, georeferencing, spatial-block splits, balancing, padding, loaders, bad input."""

import hashlib
import json
import unicodedata

import numpy as np
import pytest
import rasterio
from affine import Affine

from minescape.change.datasets import load_patch_dataset, read_patch
from minescape.change.pairs import open_pair
from minescape.change.patches import PatchOptions, make_patches, patch_windows, patches_from_files, raster_reader
from minescape.errors import ConfigError, InputError
from minescape.geo.raster import Raster, read_raster, write_raster


@pytest.fixture(scope="module")
def dataset(small_region, tmp_path_factory):
    out = tmp_path_factory.mktemp("patches") / "ds"
    s = patches_from_files(small_region.t1, small_region.t2, small_region.truth_change, out,
                           options=PatchOptions(size=64, block=128, seed=3))
    return s


def test_layout_names_and_georeferencing(dataset, small_region):
    root = dataset.root
    names = {d: sorted(p.name for p in (root / d).iterdir()) for d in ("T1", "T2", "Change")}
    assert names["T1"] == names["T2"] == names["Change"] and len(names["T1"]) == dataset.n_patches > 0
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["counts"]["total"] == dataset.n_patches == sum(dataset.counts.values())
    pair = open_pair(small_region.t1, small_region.t2)
    truth = read_raster(small_region.truth_change).data[0]
    for entry in manifest["patches"][:6]:
        name = entry["name"] + ".tif"
        with rasterio.open(root / "T1" / name) as src:
            assert src.shape == (64, 64) and src.count == 10 and src.crs == pair.grid.crs
            assert src.transform == pair.grid.transform @ Affine.translation(entry["col"], entry["row"])
            assert src.descriptions[0] == "B02"
        m = read_raster(root / "Change" / name).data[0]
        r, c = entry["row"], entry["col"]
        sub = truth[r:r + 64, c:c + 64]
        ok = m != 255
        assert np.array_equal(m[ok], sub[ok])


def test_splits_are_spatial_blocks_and_never_share_pixels(dataset):
    manifest = json.loads((dataset.root / "manifest.json").read_text())
    split_csv = (dataset.root / "split.csv").read_text().splitlines()
    assert split_csv[0] == "name,split" and len(split_csv) == dataset.n_patches + 1
    assert {e["split"] for e in manifest["patches"]} == {"train", "val", "test"}
    for e in manifest["patches"]:  # a 64 px patch lies in one 128 px block, the block's split is the patch's
        block = (e["row"] // 128, e["col"] // 128)
        same_block = [f for f in manifest["patches"] if (f["row"] // 128, f["col"] // 128) == block]
        assert {f["split"] for f in same_block} == {e["split"]}


def test_overlapping_patches_of_different_splits_never_overlap(small_region, tmp_path):
    s = patches_from_files(small_region.t1, small_region.t2, small_region.truth_change, tmp_path / "o",
                           options=PatchOptions(size=48, stride=24, block=96, seed=1, max_nodata=0.9))
    patches = json.loads((s.root / "manifest.json").read_text())["patches"]
    assert s.dropped_straddle > 0
    for a in patches:
        for b in patches:
            if a["split"] != b["split"]:
                overlap_r = min(a["row"], b["row"]) + 48 > max(a["row"], b["row"])
                overlap_c = min(a["col"], b["col"]) + 48 > max(a["col"], b["col"])
                assert not (overlap_r and overlap_c)


def test_balance_keeps_as_many_unchanged_as_changed(small_region, tmp_path):
    s = patches_from_files(small_region.t1, small_region.t2, small_region.truth_change, tmp_path / "b",
                           options=PatchOptions(size=32, balance=True, seed=5))
    assert s.changed == s.unchanged > 0 and s.dropped_balance > 0


def test_padding_modes(utm_raster, tmp_path):
    """A 17 x 23 px pair cut into 16 px patches: flush stays inside, nodata/reflect pad outside."""
    t1 = utm_raster
    t2 = utm_raster.with_data(utm_raster.data[:, ::-1, :].copy(), band_names=utm_raster.band_names)
    mask = Raster(np.zeros((1, 17, 23), np.uint8), t1.crs, t1.transform, 255)
    grid = t1.grid
    flush = patch_windows(23, 17, options=PatchOptions(size=16, padding="flush"))
    assert [(w.row, w.col) for w in flush] == [(0, 0), (0, 7), (1, 0), (1, 7)]
    padded = patch_windows(23, 17, options=PatchOptions(size=16, padding="nodata"))
    assert [(w.row, w.col) for w in padded] == [(0, 0), (0, 16), (16, 0), (16, 16)]
    s = make_patches(raster_reader(t1, t2, mask), grid, tmp_path / "n",
                     options=PatchOptions(size=16, padding="nodata", max_nodata=0.99, block=16))
    edge = read_raster(s.root / "T1" / "r000000_c000016.tif").data
    assert edge.shape == (3, 16, 16) and np.isnan(edge[:, :, 7:]).all() and np.isfinite(edge[:, 1:, :7]).all()
    s = make_patches(raster_reader(t1, t2, mask), grid, tmp_path / "r",
                     options=PatchOptions(size=16, padding="reflect", max_nodata=0.99, block=16))
    refl = read_raster(s.root / "T1" / "r000000_c000016.tif").data
    assert np.array_equal(refl[:, 1:, 7:14], refl[:, 1:, 6::-1])  # mirrored
    m = read_raster(s.root / "Change" / "r000000_c000016.tif").data[0]
    assert (m[:, 7:] == 255).all()  # padded mask pixels stay nodata


def test_mostly_nodata_patches_are_dropped(small_region, tmp_path):
    """T2's nodata corner: strict max_nodata drops the corner patch, a loose one keeps it."""
    strict = patches_from_files(small_region.t1, small_region.t2, small_region.truth_change, tmp_path / "s",
                                options=PatchOptions(size=64, max_nodata=0.05))
    loose = patches_from_files(small_region.t1, small_region.t2, small_region.truth_change, tmp_path / "l",
                               options=PatchOptions(size=64, max_nodata=0.9))
    assert strict.dropped_nodata >= 1 and loose.n_patches > strict.n_patches


def test_rerun_gives_identical_bytes_and_replaces_the_dataset(dataset, small_region, tmp_path):
    def digest(root):
        h = hashlib.sha256()
        for p in sorted(root.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(root)).encode())
                h.update(p.read_bytes())
        return h.hexdigest()

    out = tmp_path / "again"
    opts = PatchOptions(size=64, block=128, seed=3)
    patches_from_files(small_region.t1, small_region.t2, small_region.truth_change, out, options=opts)
    first = digest(out)
    assert first == digest(dataset.root)
    # a re-run with another size replaces the whole dataset (no stale 64 px patches left)
    patches_from_files(small_region.t1, small_region.t2, small_region.truth_change, out,
                       options=PatchOptions(size=100))
    assert all(read_raster(p).shape == (100, 100) for p in (out / "T1").iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".old-"))]


def test_mask_with_unexpected_values_fails_before_writing(small_region, tmp_path):
    truth = read_raster(small_region.truth_change)
    bad = truth.data.copy()
    bad[0, 100, 100] = 7
    path = write_raster(truth.with_data(bad), tmp_path / "bad_mask.tif")
    out = tmp_path / "never"
    with pytest.raises(InputError, match=r"bad_mask.tif: cannot tell the label encoding from values \[0, 1, 7\]"):
        patches_from_files(small_region.t1, small_region.t2, path, out)
    with pytest.raises(InputError, match=r"bad_mask.tif: unexpected label values \[7\] for encoding 0-1"):
        patches_from_files(small_region.t1, small_region.t2, path, out, mask_encoding="0-1")
    assert not out.exists()


def test_options_are_validated():
    with pytest.raises(ConfigError, match="choose one of: flush, nodata, reflect"):
        PatchOptions(padding="wrap")
    with pytest.raises(ConfigError, match="summing to 1"):
        PatchOptions(fractions=(0.5, 0.2, 0.2))


def test_loader_reads_the_minescape_layout(dataset):
    records = load_patch_dataset(dataset.root)
    assert len(records) == dataset.n_patches
    assert {r.split for r in records} == {"train", "val", "test"}
    t1, t2, mask = read_patch(records[0])
    assert t1.data.dtype == np.float32 and t1.shape == t2.shape == mask.shape == (64, 64)
    assert t1.band_names[0] == "B02" and set(np.unique(mask.data).tolist()) <= {0, 1, 255}


def _write_cm_patch(folder, name, rng, mask_values):
    from rasterio.crs import CRS

    tr = Affine(10, 0, 500000, 0, -10, 4000000)
    for d in ("T1", "T2"):
        dn = rng.integers(1, 4000, (4, 32, 32)).astype(np.uint16)
        write_raster(Raster(dn, CRS.from_epsg(32723), tr, None), folder / d / f"{name}.tif")
    m = rng.choice(mask_values, (1, 32, 32)).astype(np.uint8)
    mask_dir = folder / unicodedata.normalize("NFD", "Mudança")  # as unpacked on macOS
    write_raster(Raster(m, CRS.from_epsg(32723), tr, None), mask_dir / f"{name}.tif")
    return m


def test_loader_reads_change_mining2025_as_published(tmp_path):
    """Sub-folders per split, mask folder Mudança/ (decomposed Unicode), masks coded 0/255, DN images."""
    rng = np.random.default_rng(0)
    written = {}
    for split, folder in (("train", "train"), ("val", "validation"), ("test", "test")):
        for k in range(2):
            written[f"{split}_{k}"] = _write_cm_patch(tmp_path / folder, f"{split}_{k}", rng, [0, 255])
    records = load_patch_dataset(tmp_path)
    assert [r.split for r in records] == ["train", "train", "val", "val", "test", "test"]
    t1, _, mask = read_patch(records[0])
    assert t1.data.max() < 0.41  # DN / 10000
    assert np.array_equal(mask.data[0], (written[records[0].name][0] == 255).astype(np.uint8))


def test_loader_errors_name_the_folder(tmp_path):
    with pytest.raises(InputError, match="no patches found"):
        load_patch_dataset(tmp_path)
    rng = np.random.default_rng(1)
    _write_cm_patch(tmp_path, "a", rng, [0, 1])
    (tmp_path / "T2" / "a.tif").rename(tmp_path / "T2" / "b.tif")
    with pytest.raises(InputError, match="T1/ and T2/ hold different patches"):
        load_patch_dataset(tmp_path)
