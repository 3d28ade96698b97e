import numpy as np
import pytest
from affine import Affine

from minescape.errors import ConfigError, NoOverlapError
from minescape.geo.grid import Grid, bounds_in, iter_tiles, reproject_to_grid, sliding_windows, utm_crs


@pytest.mark.parametrize(("lon", "lat", "epsg"), [
    (15.0, 40.0, 32633), (-70.3, -23.6, 32719), (179.9, 65.0, 32660), (-179.9, 65.0, 32601),
    (180.1, 10.0, 32601), (5.0, 60.0, 32632), (20.0, 78.0, 32633), (10.0, 85.0, 32661), (0.0, -85.0, 32761),
])
def test_utm_choice(lon, lat, epsg):
    assert utm_crs(lon, lat).to_epsg() == epsg


def test_tiles_cover_each_pixel_once():
    count = np.zeros((101, 77), int)
    for t in iter_tiles(77, 101, size=32, overlap=5):
        r, c = t.core.row_off, t.core.col_off
        count[r:r + t.core.height, c:c + t.core.width] += 1
        assert t.read.col_off <= c and t.read.col_off + t.read.width >= c + t.core.width
        assert t.core_in_read.col_off == c - t.read.col_off
    assert (count == 1).all()


def test_sliding_windows_cover_and_fit():
    wins = list(sliding_windows(300, 200, size=128, stride=128))
    assert all(w.col_off + w.width <= 300 and w.row_off + w.height <= 200 for w in wins)
    cover = np.zeros((200, 300), bool)
    for w in wins:
        cover[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width] = True
    assert cover.all()
    with pytest.raises(ConfigError):
        list(sliding_windows(10, 10, size=0, stride=1))


def test_from_bounds_and_windows():
    g = Grid.from_bounds((100.0, 200.0, 1003.0, 907.0), 10, 32633)
    assert g.bounds == (100.0, 200.0, 1010.0, 910.0) and g.shape == (71, 91)
    w = g.window_of_bounds((150, 250, 300, 400))
    assert (w.col_off, w.width) == (5, 15)
    with pytest.raises(NoOverlapError):
        g.window_of_bounds((5000, 5000, 6000, 6000))


def test_window_of_bounds_covers_every_pixel_the_bounds_touch():
    """Bounds inside pixels: the window reaches the pixel holding each edge (rasterio's rounding dropped the last
    column and row); bounds on pixel edges (with float noise) add no pixel."""
    g = Grid("EPSG:32633", Affine(10, 0, 0, 0, -10, 100), 10, 10)
    w = g.window_of_bounds((26, 32, 68, 94))  # x 2.6..6.8 px, y 0.6..6.8 px
    assert (w.col_off, w.width, w.row_off, w.height) == (2, 5, 0, 7)
    w = g.window_of_bounds((20 + 1e-9, 30 - 1e-9, 60 - 1e-9, 90 + 1e-9))
    assert (w.col_off, w.width, w.row_off, w.height) == (2, 4, 1, 6)
    w = g.window_of_bounds((-50, -50, 500, 500))
    assert (w.col_off, w.width, w.row_off, w.height) == (0, 10, 0, 10)
    with pytest.raises(NoOverlapError):  # a site transformed far outside the CRS's area of use: inf / NaN bounds
        g.window_of_bounds((float("nan"), 0, float("inf"), 10))


def test_reproject_to_other_crs_keeps_values(utm_raster):
    """Nearest resampling onto a WGS84 grid over the raster: every output pixel holds the value of the source
    pixel under its centre (located independently with pyproj), and many pixels are compared."""
    from pyproj import Transformer

    t = utm_raster.transform
    utm_bounds = (t.c, t.f + t.e * utm_raster.shape[-2], t.c + t.a * utm_raster.shape[-1], t.f)
    left, bottom, right, top = bounds_in(utm_bounds, utm_raster.crs, "EPSG:4326")
    res = 2e-5  # degrees, about 2 m: finer than the 10 m source, inside its footprint
    target = Grid("EPSG:4326", Affine(res, 0, left, 0, -res, top), int((right - left) / res), int((top - bottom) / res))
    out = reproject_to_grid(utm_raster, target, resampling="nearest")
    assert out.crs.to_epsg() == 4326 and out.shape == (target.height, target.width)
    # where each output pixel centre falls in the source, by pyproj (not by the code under test)
    rows, cols = np.mgrid[0:target.height, 0:target.width]
    lon, lat = left + (cols + 0.5) * res, top - (rows + 0.5) * res
    x, y = Transformer.from_crs("EPSG:4326", utm_raster.crs, always_xy=True).transform(lon, lat)
    inv = ~utm_raster.transform
    fc, fr = inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f  # fractional source column, row
    sr, sc = np.floor(fr).astype(int), np.floor(fc).astype(int)
    # pixel centres close to a source pixel edge may go either way: compare those well inside a pixel
    frac_r, frac_c = fr % 1, fc % 1
    inside = (sr >= 0) & (sr < utm_raster.height) & (sc >= 0) & (sc < utm_raster.width)
    clear = inside & (np.abs(frac_r - 0.5) < 0.4) & (np.abs(frac_c - 0.5) < 0.4)
    expected = np.full(out.data.shape, np.nan, dtype=np.float32)
    expected[:, clear] = utm_raster.data[:, sr[clear], sc[clear]]
    compared = clear & np.isfinite(expected[0])
    assert compared.sum() > 1000  # the target overlaps the raster: values are really compared
    np.testing.assert_array_equal(out.data[:, compared], expected[:, compared])
    with pytest.raises(ConfigError, match="nearest"):
        reproject_to_grid(utm_raster, target, resampling="fancy")


def test_window_starts_and_aligned_window():
    from rasterio.windows import Window

    from minescape.geo.grid import aligned_window, window_starts

    assert window_starts(300, size=128, stride=128) == [0, 128, 172]
    assert window_starts(100, size=128, stride=64) == [0]
    g = Grid("EPSG:32633", Affine(10, 0, 1000, 0, -10, 2000), 5, 4)
    assert aligned_window(g.crs, Affine(10, 0, 900, 0, -10, 2100), g) == Window(10, 10, 5, 4)
    assert aligned_window(g.crs, Affine(10, 0, 905, 0, -10, 2100), g) is None  # half-pixel shift
    assert aligned_window(g.crs, Affine(20, 0, 900, 0, -20, 2100), g) is None  # other pixel size


def test_pixel_area_of_a_rotated_grid():
    """10 m pixels rotated by 30°: 100 m² (a * e alone gave 75)."""
    g = Grid("EPSG:32633", Affine.translation(500000, 4100000) * Affine.rotation(30) * Affine.scale(10, -10), 4, 4)
    assert g.pixel_area() == pytest.approx(100.0) and abs(g.transform.a * g.transform.e) == pytest.approx(75.0)


def test_a_box_across_the_antimeridian_is_one_window_of_a_raster_running_past_180():
    """A UTM 1S site grid at Fiji (179.97 E to 179.96 W): its bounds in lon/lat come back west > east."""
    from rasterio.crs import CRS

    wgs84, utm1s = CRS.from_epsg(4326), CRS.from_epsg(32701)
    x0, y0 = 179_500.0, 8_173_000.0  # near 180 degrees in zone 1S
    site = Grid(utm1s, Affine(10, 0, x0, 0, -10, y0), 300, 200)
    b = bounds_in(site.bounds, utm1s, wgs84)
    assert b[0] > 179.9 and b[2] < -179.9  # the condition: west > east
    step = 0.4 / 3600  # TanDEM-X's 0.4 arc-second pixels, longitudes past 180 as gdalwarp writes them
    past = Grid(wgs84, Affine(step, 0, 179.9, 0, -step, -16.4), round(0.3 / step), round(0.2 / step))
    win = past.window_of_bounds(b)
    west, _, east, _ = past.window_grid(win).bounds
    assert west <= b[0] and east >= b[2] + 360 and east - west < 0.1  # the site's few hundredths of a degree
    below = Grid(wgs84, Affine(step, 0, -180.2, 0, -step, -16.4), round(0.3 / step), round(0.2 / step))
    west, _, east, _ = below.window_grid(below.window_of_bounds(b)).bounds
    assert west <= b[0] - 360 and east >= b[2] and east - west < 0.1
    world = Grid(wgs84, Affine(0.01, 0, -180, 0, -0.01, 90), 36000, 18000)  # stops at +-180: two windows
    with pytest.raises(NoOverlapError, match="crosses the antimeridian and this raster stops at it"):
        world.window_of_bounds(b)
