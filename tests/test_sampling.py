"""Stratified sampling and the area-weighted estimators of Olofsson et al. (2014)."""

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from minescape.errors import ConfigError, InputError
from minescape.geo.raster import Raster, write_raster
from minescape.legend import WORLDCOVER
from minescape.sampling import (
    allocate,
    area_weighted_estimates,
    export_points,
    import_points,
    sample_size,
    stratified_points,
)

# Olofsson et al. 2014, Table 8 (rows map, columns reference) and the mapped pixels of each stratum (30 m).
OLOFSSON_COUNTS = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
OLOFSSON_PIXELS = [200_000, 150_000, 3_200_000, 6_450_000]


def _points_from_matrix(matrix):
    m, r = [], []
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            m += [i + 1] * int(matrix[i, j])
            r += [j + 1] * int(matrix[i, j])
    return np.array(m), np.array(r)


def test_olofsson_worked_example():
    m, r = _points_from_matrix(OLOFSSON_COUNTS)
    e = area_weighted_estimates(m, r, [1, 2, 3, 4], OLOFSSON_PIXELS, pixel_area=0.09)  # hectares
    # published figures: deforestation 21,158 ± 6,158 ha; forest gain 11,686 ± 3,756 ha; OA 0.95 ± 0.02;
    # user's 0.88 ± 0.07 and producer's 0.75 ± 0.21 for deforestation
    assert e.area[0] == pytest.approx(21_158, abs=1)
    assert e.area_ci[0] == pytest.approx(6_158, abs=1)
    assert e.area[1] == pytest.approx(11_686, abs=1)
    assert e.area_ci[1] == pytest.approx(3_756, abs=1)
    assert e.overall_accuracy == pytest.approx(0.947, abs=0.001)
    assert e.overall_accuracy_ci == pytest.approx(0.018, abs=0.001)
    assert e.users_accuracy[0] == pytest.approx(0.88) and e.users_accuracy_ci[0] == pytest.approx(0.074, abs=0.001)
    assert e.producers_accuracy[0] == pytest.approx(0.749, abs=0.001)
    assert e.producers_accuracy_ci[0] == pytest.approx(0.213, abs=0.001)
    assert e.area.sum() == pytest.approx(sum(OLOFSSON_PIXELS) * 0.09)


def test_allocations():
    counts = [200_000, 150_000, 3_200_000, 6_450_000]
    assert allocate(counts, 640, method="proportional").tolist() == [13, 9, 205, 413]
    olof = allocate(counts, 640, method="olofsson", min_per_class=50)
    assert olof.sum() == 640 and olof.min() >= 50 and olof[3] > olof[2] > olof[0]
    # the paper's own example (§5.1.2, n = 641, 75 for each rare stratum): the rare strata get 75, the rest is
    # proportional among the large ones only (a floor for all, then proportional over all, gave 82/80/184/295)
    assert allocate(counts, 641, method="olofsson", min_per_class=75).tolist() == [75, 75, 163, 328]
    eq = allocate([5, 150_000, 0, 6_450_000], 100, method="equal")
    assert eq.tolist() == [5, 47, 0, 48]  # capped at the stratum size, empty strata get nothing
    with pytest.raises(ConfigError, match="proportional, equal, olofsson"):
        allocate(counts, 10, method="random")
    assert sample_size([0.02, 0.015, 0.32, 0.645], [0.7, 0.6, 0.9, 0.95], target_se=0.01) == 641


def _class_map(tmp_path, rng):
    data = rng.choice([10, 20, 80], size=(300, 260), p=[0.6, 0.1, 0.3]).astype(np.uint8)
    data[:40, :50] = 0  # nodata
    data[100:103, 100:103] = 50  # a rare class of 9 pixels
    r = Raster(data, CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 4100000), 0)
    return write_raster(r, tmp_path / "map.tif", legend=WORLDCOVER), data


def test_stratified_points_are_seeded_and_within_strata(tmp_path):
    path, data = _class_map(tmp_path, np.random.default_rng(0))
    a, counts = stratified_points(path, 120, WORLDCOVER, allocation="equal", seed=3, tile=64)
    b, _ = stratified_points(path, 120, WORLDCOVER, allocation="equal", seed=3, tile=64)
    c, _ = stratified_points(path, 120, WORLDCOVER, allocation="equal", seed=4, tile=64)
    d, _ = stratified_points(path, 120, WORLDCOVER, allocation="equal", seed=3, tile=1000)
    assert a[["row", "col"]].equals(b[["row", "col"]])  # same seed and tile size, same points
    assert not a[["row", "col"]].equals(c[["row", "col"]])
    assert d["map_code"].value_counts().sort_index().equals(a["map_code"].value_counts().sort_index())
    assert (data[a["row"], a["col"]] == a["map_code"]).all()  # each point in its stratum
    per = a["map_code"].value_counts().to_dict()
    assert per[50] == 9 and per[10] == per[20] == per[80] == 37
    assert counts[WORLDCOVER.codes.index(50)] == 9
    assert not a.duplicated(["row", "col"]).any()


def test_map_read_with_the_wrong_legend_names_the_one_that_fits(tmp_path):
    """A WorldCover map sampled with the default sinolc1 legend: the one-line error says its values are all
    WorldCover classes; values no built-in legend holds get no hint."""
    from minescape.legend import SINOLC1

    path, data = _class_map(tmp_path, np.random.default_rng(0))
    assert set(np.unique(data).tolist()) - set(SINOLC1.codes)  # the map holds codes sinolc1 lacks
    with pytest.raises(InputError) as err:
        stratified_points(path, 10, SINOLC1)
    text = str(err.value)
    assert text.startswith(str(path)) and "are not in the sinolc1 legend" in text and "\n" not in text
    assert text.endswith("; every value is a class of the worldcover legend (--legend worldcover)")
    data[0, 0] = 77
    odd = write_raster(Raster(data[None], CRS.from_epsg(32633), Affine(10, 0, 0, 0, -10, 0), 0), tmp_path / "odd.tif")
    with pytest.raises(InputError, match=r"values \[77\] are not in the worldcover legend \(expected \[0, 10,") as err:
        stratified_points(odd, 10, WORLDCOVER)
    assert "every value" not in str(err.value)


def test_export_import_roundtrip_and_bad_labels(tmp_path):
    path, _ = _class_map(tmp_path, np.random.default_rng(1))
    pts, _ = stratified_points(path, 40, WORLDCOVER, allocation="proportional", seed=0)
    pts["ref_code"] = pts["map_code"]
    pts.loc[pts.index[:5], "ref_code"] = np.nan  # not interpreted yet
    gpkg, csv = export_points(pts, tmp_path / "pts")
    for f in (gpkg, csv):
        back = import_points(f, WORLDCOVER)
        assert len(back) == 35 and (back["ref_code"] == back["map_code"]).all()
        assert back.crs.to_epsg() == 32633
    table = __import__("pandas").read_csv(csv)
    table.loc[7, "ref_code"] = 33
    table.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match=r"bad.csv: ref_code values \[33\]"):
        import_points(tmp_path / "bad.csv", WORLDCOVER)
    typos = table.astype({"ref_code": object})
    for typo in ("10.5", "forest"):  # neither may become a class, nor pass as "not interpreted yet"
        typos.loc[7, "ref_code"] = typo
        typos.to_csv(tmp_path / "typo.csv", index=False)
        with pytest.raises(InputError, match=rf"typo.csv: ref_code values \['{typo}'\] \(points \[\S+\]\) are not "
                                             r"class codes \(whole numbers\)"):
            import_points(tmp_path / "typo.csv", WORLDCOVER)
    named = table.drop(columns="ref_code").assign(ref_class="Tree cover")
    named.to_csv(tmp_path / "named.csv", index=False)
    assert (import_points(tmp_path / "named.csv", WORLDCOVER)["ref_code"] == 10).all()


def test_a_stratum_without_points_is_left_out_and_named():
    """Class 3 is mapped on 20 km² but none of its points was interpreted. Counted with its weight it would make a
    map whose every interpreted point agrees 80 % accurate and lose 20 km²; it is left out and named instead."""
    from minescape.sampling import area_weighted_estimates

    m = np.array([1] * 10 + [2] * 10)
    e = area_weighted_estimates(m, m.copy(), [1, 2, 3], [50.0, 30.0, 20.0])
    assert e.n_per_stratum.tolist() == [10, 10, 0]
    assert e.overall_accuracy == pytest.approx(1.0)
    assert e.area.tolist() == pytest.approx([50.0, 30.0, 0.0]) and e.mapped_area.tolist() == [50.0, 30.0, 20.0]
    assert e.unsampled == (3,) and e.unsampled_area == 20.0
    assert e.to_dict(["a", "b", "c"])["unsampled_strata"] == ["c"]
    full = area_weighted_estimates(np.r_[m, 3, 3], np.r_[m, 3, 3], [1, 2, 3], [50.0, 30.0, 20.0])
    assert full.unsampled == () and full.area.tolist() == pytest.approx([50.0, 30.0, 20.0])


def test_points_of_another_legend_name_it(tmp_path):
    """Points sampled from a WorldCover map, validated with the default legend (sinolc1): the line says which
    legend holds every code, and the option that picks it."""
    path, _ = _class_map(tmp_path, np.random.default_rng(1))
    pts, _ = stratified_points(path, 30, WORLDCOVER, allocation="proportional", seed=0)
    pts["ref_code"] = pts["map_code"]
    _, csv = export_points(pts, tmp_path / "pts")
    from minescape.legend import SINOLC1

    assert set(pts["map_code"]) - set(SINOLC1.codes)  # codes sinolc1 does not hold
    with pytest.raises(InputError, match=r"pts.csv: ref_code values .* are not in the sinolc1 legend .*; every "
                                         r"value is a class of the worldcover legend \(--legend worldcover\)$"):
        import_points(csv, SINOLC1)
