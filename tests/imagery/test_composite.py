"""Composites: order-independent bytes, planted clouds and shadows removed, medoid picks real spectra."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from minescape.errors import ConfigError, InputError
from minescape.geo.grid import Grid
from minescape.imagery.composite import annual_composite, reduce_observations
from minescape.imagery.local_scenes import discover_scenes
from minescape.imagery.sources import LocalSource, Observation, StacSource
from minescape.imagery.stac_search import StacQuery
from minescape.lulc.features import SPECTRAL_BANDS
from minescape.sites import read_sites
from minescape.synthetic_stac import scene_truth


def _obs(n=5, shape=(7, 9), bands=3, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        refl = rng.uniform(0, 0.4, (bands, *shape)).astype(np.float32)
        clear = rng.random(shape) > 0.3
        out.append(Observation(f"s{k}", dt.date(2020, 1 + k, 1), refl, clear))
    return out


@pytest.mark.parametrize("method", ["median", "clearest", "medoid"])
def test_order_independent_bytes(method, utm_raster):
    grid = Grid(utm_raster.crs, utm_raster.transform, 9, 7)
    obs = _obs()
    a = reduce_observations(obs, grid, ["B02", "B03", "B04"], method=method)  # (threads only change read order)
    b = reduce_observations(obs[::-1], grid, ["B02", "B03", "B04"], method=method)
    c = reduce_observations([obs[2], obs[0], obs[4], obs[1], obs[3]], grid, ["B02", "B03", "B04"], method=method)
    assert np.isfinite(a.raster.data).sum() > 0
    assert a.raster.data.tobytes() == b.raster.data.tobytes() == c.raster.data.tobytes()
    assert a.clear_count.data.tobytes() == b.clear_count.data.tobytes() and a.scenes == b.scenes


def test_median_medoid_values(utm_raster):
    grid = Grid(utm_raster.crs, utm_raster.transform, 9, 7)
    obs = _obs()
    stack = np.stack([o.reflectance for o in obs])
    clear = np.stack([o.clear for o in obs])
    med = reduce_observations(obs, grid, ["a", "b", "c"], method="median")
    r, c = 3, 4
    expect = np.median(stack[clear[:, r, c], :, r, c], axis=0)
    np.testing.assert_allclose(med.raster.data[:, r, c], expect, rtol=1e-6)
    assert int(med.clear_count.data[0, r, c]) == int(clear[:, r, c].sum())
    mdd = reduce_observations(obs, grid, ["a", "b", "c"], method="medoid")
    for rr in range(7):
        for cc in range(9):
            if clear[:, rr, cc].any():  # a real observation, one of the clear ones
                assert any(np.array_equal(mdd.raster.data[:, rr, cc], stack[k, :, rr, cc])
                           for k in np.flatnonzero(clear[:, rr, cc]))
    with pytest.raises(ConfigError, match="median, clearest, medoid"):
        reduce_observations(obs, grid, ["a", "b", "c"], method="mean")  # type: ignore[arg-type]


def test_composite_removes_planted_clouds(stac_region):
    """Per site, the median composite is within noise of the cloud-free scenes where clouds and shadows were
    planted; the clearest single scene is not."""
    region, files, stac = stac_region
    sites, _ = read_sites(files.sites)
    source = StacSource(StacQuery(str(stac.planetary_computer), None, 20))
    year = 2018
    planted = [scene_truth(region, year, k) for k in range(3)]  # the 3 scenes under 20 % cloud
    clear_mean = np.mean([p[0] for p in planted], axis=0)
    hit = 0
    for site in sites:
        comp = annual_composite(source, site.grid, year, bands=SPECTRAL_BANDS, mask=site.mask())
        best = annual_composite(source, site.grid, year, bands=SPECTRAL_BANDS, method="clearest", mask=site.mask())
        assert comp.n_scenes == 3 and best.n_scenes == 1
        win = region.grid.window_of_bounds(site.grid.bounds)
        r0, c0 = int(win.row_off), int(win.col_off)
        sl = (slice(r0, r0 + site.grid.height), slice(c0, c0 + site.grid.width))
        cloudy_any = np.zeros(site.grid.shape, bool)
        for _, _, scl in planted:
            cloudy_any |= np.isin(scl[sl], (3, 8, 9))
        truth = clear_mean[0][sl]  # B02
        cloudy_in_best = cloudy_any & (best.clear_count.data[0] == 0)
        assert cloudy_any.sum() > 50  # clouds really planted over this site
        err_comp = np.nanmean(np.abs(comp.raster.data[0][cloudy_any] - truth[cloudy_any]))
        assert err_comp < 0.02
        if cloudy_in_best.sum() > 20:
            err_best = np.nanmean(np.abs(best.raster.data[0][cloudy_in_best] - truth[cloudy_in_best]))
            assert err_best > 5 * err_comp
            hit += 1
        assert comp.clear_fraction(site.mask()) > 0.95
    assert hit >= 1


def test_min_clear_and_no_scene(stac_region):
    _, files, stac = stac_region
    sites, _ = read_sites(files.sites)
    site = sites[0]
    source = StacSource(StacQuery(str(stac.planetary_computer), None, 100))  # the 60 % cloudy scene kept
    with pytest.raises(InputError, match=r"site S01: clear fraction 0\.\d\d < 0\.99 after cloud masking 1 scene"):
        annual_composite(_Only(source, 3), site.grid, 2018, bands=SPECTRAL_BANDS, mask=site.mask(),
                         min_clear=0.99, what="site S01")
    with pytest.raises(InputError, match="site S01: no scene of 2031 found"):
        annual_composite(source, site.grid, 2031, bands=SPECTRAL_BANDS, what="site S01")


class _Only:
    """A source restricted to the k-th scene of each year (a real StacSource underneath)."""

    def __init__(self, source, k):
        self.source, self.k = source, k

    def scenes(self, grid, year):
        return self.source.scenes(grid, year)[self.k:self.k + 1]

    def observe(self, scene, grid, bands, *, area=None):
        return self.source.observe(scene, grid, bands, area=area)

    def describe(self):
        return self.source.describe()

    scene_threads = 1


def test_local_scenes_through_the_same_engine(small_region):
    """Local GeoTIFF stacks are a source of the same engine (spectral clear mask); the cloudy March scene of
    the first year is outvoted by the median."""
    sites, _ = read_sites(small_region.sites)
    refs = discover_scenes([small_region.scene_dir])
    src = LocalSource(refs)
    site = sites[0]
    year = 2018  # the first DCM year: a clear July scene and a 35 % cloudy March one
    scenes = src.scenes(site.grid, year)
    assert len(scenes) == 2
    comp = annual_composite(src, site.grid, year, bands=SPECTRAL_BANDS, mask=site.mask())
    assert comp.n_scenes == 2 and comp.clear_count.data.max() == 2
    inside = site.mask()
    finite = np.isfinite(comp.raster.data).all(axis=0)
    assert finite[inside].mean() > 0.97
    np.testing.assert_array_equal(finite, comp.clear_count.data[0] > 0)  # NaN only where nothing was clear


def test_threads_same_bytes(stac_region):
    """Reading scenes and assets in parallel gives the same composite bytes as one request after the other."""
    from minescape.imagery.window_reader import ReadOptions

    _, files, stac = stac_region
    site = read_sites(files.sites)[0][0]
    query = StacQuery(str(stac.planetary_computer), None, 20)
    one = StacSource(query, read=ReadOptions(threads=1))
    many = StacSource(query, read=ReadOptions(threads=8))
    assert one.scene_threads == 1 and many.scene_threads == 4
    a = annual_composite(one, site.grid, 2019, bands=SPECTRAL_BANDS, mask=site.mask())
    b = annual_composite(many, site.grid, 2019, bands=SPECTRAL_BANDS, mask=site.mask())
    assert a.n_scenes == 3 and np.isfinite(a.raster.data).sum() > 0
    assert (a.raster.data.tobytes() == b.raster.data.tobytes()
            and a.clear_count.data.tobytes() == b.clear_count.data.tobytes())


def test_scenes_with_no_clear_pixel_are_one_note(utm_raster):
    """Scenes clouded over the whole grid are counted in one note (a cloudy year has dozens), in date order."""
    grid = Grid(utm_raster.crs, utm_raster.transform, 9, 7)
    obs = _obs(n=6)
    assert all(o.clear.any() for o in obs)
    assert reduce_observations(obs, grid, ["a", "b", "c"]).notes == ()
    for k in (5, 1, 3, 4):
        obs[k] = Observation(obs[k].id, obs[k].date, obs[k].reflectance, np.zeros_like(obs[k].clear))
    comp = reduce_observations(obs[::-1], grid, ["a", "b", "c"])
    assert comp.notes == ("4 of 6 scenes had no clear pixel here (not used): s1, s3, s4, ...",)
