"""QGIS styles beside continuous rasters: the QML QGIS applies when it opens ``<name>.tif`` (``<name>.qml``)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio

from minescape.change.difference import DetectOptions, detect_files
from minescape.errors import InputError
from minescape.geo.raster_style import (
    DISPLAY_PERCENTILE,
    ColourRamp,
    diverging_ramp,
    legend_qml,
    ramp_qml,
    sequential_ramp,
    style_path,
    true_colour_qml,
    write_ramp_style,
    write_true_colour_style,
)


def _stops(qml_text: str) -> list[tuple[float, str]]:
    root = ET.fromstring(qml_text.split("\n", 1)[1])  # past the DOCTYPE line
    renderer = root.find("pipe/rasterrenderer")
    assert renderer is not None and renderer.get("type") == "singlebandpseudocolor" and renderer.get("band") == "1"
    shader = renderer.find("rastershader/colorrampshader")
    assert shader is not None and shader.get("colorRampType") == "INTERPOLATED"
    items = [(float(i.get("value")), i.get("color")) for i in shader.findall("item")]
    assert float(renderer.get("classificationMin")) == items[0][0]
    assert float(renderer.get("classificationMax")) == items[-1][0]
    return items


def test_ramps_are_valid_qgis_renderers():
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    div = _stops(ramp_qml(diverging_ramp(0.271729, "SAVI(T2) - SAVI(T1)")))
    assert [v for v, _ in div] == pytest.approx(np.linspace(-0.27, 0.27, 9))  # two significant digits
    # the report's colours (RdBu): dark red at the loss end, near white at 0, dark blue at the gain end
    assert [c for _, c in div] == [to_hex(c) for c in colormaps["RdBu"](np.linspace(0, 1, 9))]
    assert div[0][1] == "#67001f" and div[4][1] == "#f6f7f7" and div[-1][1] == "#053061"
    seq = _stops(ramp_qml(sequential_ramp(0.0, 1.0, "probability")))
    assert [v for v, _ in seq] == pytest.approx(np.linspace(0, 1, 9))
    assert seq[0][1] == "#440154" and seq[-1][1] == "#fde725"  # viridis, as the report
    assert _stops(ramp_qml(diverging_ramp(0.0, "flat")))[-1][0] == 1.0  # an all-equal map still gets a ramp
    with pytest.raises(ValueError, match="increasing"):
        ColourRamp(((1.0, "#000000"), (0.5, "#ffffff")), "backwards")


def test_write_ramp_style_beside_the_raster(tmp_path):
    path = write_ramp_style(tmp_path / "prob.tif", sequential_ramp(0.0, 1.0, "p -- q"))
    assert path == style_path(tmp_path / "prob.tif") == tmp_path / "prob.qml"
    text = path.read_text()
    assert "<!-- p - - q -->" in text  # a title cannot end the XML comment
    assert write_ramp_style(tmp_path / "prob.tif", sequential_ramp(0.0, 1.0, "p -- q")).read_text() == text


@pytest.mark.parametrize("options", [DetectOptions(), DetectOptions(method="CVA", threshold="percentile", value=97)])
def test_change_detect_writes_the_difference_style(small_region, tmp_path, options):
    """The ramp spans the difference's 98th percentile of |score| (a diverging ramp for an index, a sequential
    one for the CVA magnitude), computed from the same histogram as the threshold: it is checked here against
    the written difference itself."""
    res = detect_files(small_region.t1, small_region.t2, tmp_path / "out", options=options, window=96)
    stops = _stops(style_path(res.difference).read_text())
    with rasterio.open(res.difference) as src:
        d = src.read(1)
    d = d[np.isfinite(d)]
    assert d.size > 1000
    score = np.abs(d)
    expected = float(f"{np.percentile(score, DISPLAY_PERCENTILE):.2g}")
    top = stops[-1][0]
    assert top == pytest.approx(expected, rel=0.05, abs=0.002)  # the histogram's bins are 3/4096 wide
    assert (score > top).mean() < 0.03 and (score > top / 2).mean() > 0.01  # the ramp neither clips much nor idles
    if options.method == "CVA":
        assert stops[0][0] == 0.0 and stops[0][1] == "#440154"
    else:
        assert stops[0][0] == -top and stops[4][0] == 0.0
    # a re-run that fails once it has started (date 2 all nodata) leaves no style of the old difference
    with rasterio.open(small_region.t2) as src:
        profile, descriptions = src.profile, src.descriptions
        assert profile["nodata"] == 0
    empty = tmp_path / "empty.tif"
    with rasterio.open(empty, "w", **profile) as dst:
        dst.descriptions = descriptions
    with pytest.raises(InputError, match="every pixel is nodata"):
        detect_files(small_region.t1, empty, tmp_path / "out", options=options, window=96)
    assert not style_path(res.difference).exists() and not res.difference.exists() and not res.mask.exists()


def test_true_colour_style_for_stacks_with_the_visible_bands(tmp_path):
    text = true_colour_qml(("B02", "B03", "B04", "B08"))
    root = ET.fromstring(text.split("\n", 1)[1])
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "multibandcolor"
    assert (renderer.get("redBand"), renderer.get("greenBand"), renderer.get("blueBand")) == ("3", "2", "1")
    assert [renderer.find(f"{c}ContrastEnhancement/maxValue").text for c in ("red", "green", "blue")] == ["3000"] * 3
    assert true_colour_qml(("B04", "B08")) is None
    path = write_true_colour_style(tmp_path / "c.tif", ("b04", "b03", "b02"))
    assert path == tmp_path / "c.qml" and 'redBand="1"' in path.read_text()
    assert write_true_colour_style(tmp_path / "c.tif", ("B08",)) is None and not path.exists()  # no stale style


def test_legend_style_lists_the_class_names():
    from minescape.legend import MINING_LULC

    root = ET.fromstring(legend_qml(MINING_LULC).split("\n", 1)[1])
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = renderer.findall("colorPalette/paletteEntry")
    assert [(int(e.get("value")), e.get("label")) for e in entries] == [(c.code, c.name) for c in MINING_LULC.classes]
    assert entries[0].get("color") == "#{:02x}{:02x}{:02x}".format(*MINING_LULC.classes[0].color[:3])
    assert all(int(e.get("value")) != MINING_LULC.nodata for e in entries)  # nodata stays transparent
