"""What reading the imagery decided reaches the run's records: a catalogue DN offset the pixels contradict is
noted per site (``imagery_notes`` in ``report/run.json`` and the report's site popup) on both local paths, the
median composite and the clearest scene, and for ``change predict`` in its GeoTIFF tags and output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from minescape.cli.app import app
from minescape.geo.raster import read_raster


def _items_flagged_wrongly(collection: Path, year: str, out: Path) -> Path:
    """``collection`` saved to ``out`` with absolute hrefs; its items of ``year`` claim baseline 05.00 with the
    offset not applied (so the conventions would subtract 1000 DN their pixels never had)."""
    data = json.loads(collection.read_text())
    for feat in data["features"]:
        for asset in feat["assets"].values():
            asset["href"] = str((collection.parent / asset["href"]).resolve())
        if feat["properties"]["datetime"].startswith(year):
            feat["properties"].update({"s2:processing_baseline": "05.00", "earthsearch:boa_offset_applied": False})
    out.write_text(json.dumps(data))
    return out


def _classify(files, scenes: Path, out: Path, composite: str) -> dict:
    res = CliRunner().invoke(app, ["lulc", "classify", str(files.sites), str(out), "-s", str(scenes), "--dcm",
                                   str(files.dcm_dh), "--dcm-year", str(files.dcm_year), "--composite", composite,
                                   "--no-quicklook"])
    assert res.exit_code == 0, res.output
    return json.loads((out / "report" / "run.json").read_text())["results"]


def test_contradicted_offset_is_noted_per_site_and_undone(stac_region, tmp_path):
    _, files, stac = stac_region
    plain = _items_flagged_wrongly(stac.earth_search, "1900", tmp_path / "plain.json")  # nothing changed
    wrong = _items_flagged_wrongly(stac.earth_search, "2018", tmp_path / "wrong.json")
    for composite, expected in (("median", 4), ("clearest", 1)):
        ok = _classify(files, plain, tmp_path / f"{composite}_plain", composite)
        bad = _classify(files, wrong, tmp_path / f"{composite}_wrong", composite)
        by_year = {r["year"]: sid for sid, r in bad.items()}
        assert set(by_year) == {2018, 2020}  # one site reads the items flagged wrongly, one does not
        s18, s20 = by_year[2018], by_year[2020]
        assert all("imagery_notes" not in r for r in ok.values())
        notes = bad[s18]["imagery_notes"]
        assert len(notes) == expected and all("cannot carry the baseline-04.00 offset" in n for n in notes)
        assert "imagery_notes" not in bad[s20]
        if composite == "clearest":
            assert bad[s18]["scene"] in notes[0]
        # the pixels decided: the same class map as from the items flagged rightly
        a = read_raster(tmp_path / f"{composite}_plain" / "maps" / f"{s18}.tif").data
        b = read_raster(tmp_path / f"{composite}_wrong" / "maps" / f"{s18}.tif").data
        assert (a > 0).sum() > 100
        np.testing.assert_array_equal(a, b)
        html = (tmp_path / f"{composite}_wrong" / "report.html").read_text()
        assert "imagery_notes" in html and "cannot carry the baseline-04.00 offset" in html
        assert "Imagery notes" in html and "1 site(s) with notes" in html  # the run's table, beside the popups


def test_change_predict_notes_a_contradicted_offset(stac_region, tmp_path):
    """``change predict`` on one STAC item per date, date 1 flagged wrongly: the pixels decide (the same
    probabilities as the item flagged rightly), and the run says so on its output and in both GeoTIFFs' tags."""
    import rasterio

    from minescape.change.deep.train import Sample, TrainConfig, holdout_split, train

    _, _, stac = stac_region
    items = {}
    for name, year in (("plain", "1900"), ("wrong", "2018")):
        data = json.loads(_items_flagged_wrongly(stac.earth_search, year, tmp_path / f"{name}.json").read_text())
        feats = {f["properties"]["datetime"][:4]: f for f in data["features"]}  # one item of each year
        items[name] = []
        for y in ("2018", "2020"):
            path = tmp_path / name / f"{feats[y]['id']}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(feats[y]))
            items[name].append(path)
    bands = ("B02", "B03", "B04", "B08")
    rng = np.random.default_rng(0)  # a network of a few steps: enough to give probabilities to compare
    t1 = rng.uniform(0.02, 0.3, (4, 64, 64)).astype(np.float32)
    t2 = t1 + rng.normal(0, 0.02, t1.shape).astype(np.float32)
    label = (rng.random((64, 64)) < 0.1).astype(np.uint8)
    tr, va = holdout_split([Sample("toy", t1, t2, label)], fraction=0.25)
    model = train(tr, va, tmp_path / "model", bands=bands, progress=False,
                  config=TrainConfig(arch="fc-siam-diff", crop=32, batch_size=2, epochs=1, steps_per_epoch=2,
                                     seed=1, val_tile=32)).model_path
    probs, outputs = {}, {}
    for name, (p1, p2) in items.items():
        res = CliRunner().invoke(app, ["change", "predict", str(model), str(p1), str(p2), str(tmp_path / f"o_{name}"),
                                       "--threads", "1"])
        assert res.exit_code == 0, res.output
        outputs[name] = res.output
        probs[name] = read_raster(tmp_path / f"o_{name}" / "change_probability.tif").data
        for tif in ("change_probability.tif", "change_mask.tif"):
            with rasterio.open(tmp_path / f"o_{name}" / tif) as src:
                tags = src.tags()
            if name == "wrong":
                assert items[name][0].stem in tags["scene_notes"] and "cannot carry" in tags["scene_notes"]
            else:
                assert "scene_notes" not in tags
    assert "note: " in outputs["wrong"] and "cannot carry the baseline-04.00 offset" in outputs["wrong"]
    assert (tmp_path / "o_wrong" / "report.html").exists() and "report: " in outputs["wrong"]  # as change detect
    html = (tmp_path / "o_wrong" / "report.html").read_text()
    assert "scene notes" in html and "cannot carry the baseline-04.00 offset" in html
    assert "note: " not in outputs["plain"]
    assert np.isfinite(probs["plain"]).mean() > 0.5
    np.testing.assert_allclose(probs["wrong"], probs["plain"], rtol=0, atol=1e-6, equal_nan=True)
